"""Logging: JSON lines off a terminal, readable on one, and secrets masked in both."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st

from bridge.logs import SecretMasker, configure, get_logger, mask_text, masker


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    configure("auto", stream=out)
    get_logger().info("delivered", org="coop", post_id="1", toot_id="2")
    line = json.loads(out.getvalue())
    assert line["event"] == "delivered" and line["org"] == "coop" and line["level"] == "info" and "timestamp" in line


def test_console_on_a_tty_and_forced_formats() -> None:
    out = Tty()
    configure("auto", stream=out)
    get_logger().info("hello", org="coop")
    assert "hello" in out.getvalue() and not out.getvalue().lstrip().startswith("{")
    out = Tty()
    configure("json", stream=out)
    get_logger().info("hello")
    assert json.loads(out.getvalue())["event"] == "hello"


def test_secret_keys_and_shapes_are_masked() -> None:
    out = io.StringIO()
    configure("json", stream=out)
    masker.register("registered-secret-value")
    get_logger().warning(
        "oops",
        access_token="abc",
        client_secret="def",
        detail="Authorization: Bearer abcdefghijklmnop failed; registered-secret-value leaked",
        url="https://geno.social/oauth/token?code=abcdefgh1234&client_secret=zzzzzzzzzz",
        nested={"token": "t", "ok": "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl76ZC9Ub0wnz4XsNiRVBChTYbJcE3F"},
    )
    raw = out.getvalue()
    for secret in ("abcdefghijklmnop", "registered-secret-value", "abcdefgh1234", "zzzzzzzzzz", "EUifiRBkKG5E2XzMDjRfl76ZC9Ub0wnz4XsNiRVBChTYbJcE3F"):
        assert secret not in raw, secret
    line = json.loads(raw)
    assert line["access_token"] == "***" and line["client_secret"] == "***" and line["nested"]["token"] == "***"


def test_mask_text_keeps_ordinary_text() -> None:
    assert mask_text("posted 3 toots for coop") == "posted 3 toots for coop"
    m = SecretMasker()
    m.register("s3cr3t-token")
    assert m(None, "info", {"event": "x", "e": RuntimeError("bad s3cr3t-token")})["e"] == "RuntimeError: bad ***"


def test_every_registered_secret_is_masked_among_ten_thousand() -> None:
    """The daemon registers every organisation's token; each must still be masked, wherever it appears."""
    import secrets as random_secrets

    m = SecretMasker()
    tokens = [random_secrets.token_urlsafe(32) for _ in range(10_000)]
    m.register(*tokens)
    m.register(*tokens[:10])  # registering again changes nothing
    for token in (tokens[0], tokens[4_999], tokens[-1]):
        text = f"POST /api/v1/statuses failed for {token}: {token[:20]} and again{token}."
        masked = m.mask(text)
        assert token not in masked and masked.count("***") == 2 and token[:20] in masked
    assert len(m.secrets) == 10_000 and len(m.secrets[0]) >= len(m.secrets[-1])


@given(
    secrets=st.lists(st.text(alphabet="abcd-_", min_size=1, max_size=9), max_size=8),
    pieces=st.lists(st.text(alphabet="abcd-_ ", max_size=12), max_size=8),
)
def test_no_registered_secret_survives_masking_even_when_secrets_overlap(secrets: list[str], pieces: list[str]) -> None:
    m = SecretMasker()
    m.register(*secrets)
    text = "".join(p + (secrets[i % len(secrets)] if secrets else "") for i, p in enumerate(pieces))
    masked = m.mask(text)
    for s in secrets:
        if len(s) >= 4:
            assert s not in masked, (s, text, masked)
