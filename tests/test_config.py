"""Configuration: every bad input gives a ConfigError that names the file, the key and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.config import effective, find_config, load_config, parse_config
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    p = tmp_path / "config.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p, environ=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text, env)
    message = str(exc.value)
    assert str(tmp_path / "config.yaml") in message or "config.yaml" in message
    return message


def test_example_config_loads_and_documents_every_key() -> None:
    config = load_config(ROOT / "config.example.yaml", environ={"X_BEARER_TOKEN": "secret-token-value"})
    assert config.x.bearer_token == "secret-token-value"
    assert config.mastodon.default_instance == "https://geno.social"
    assert config.x.poll_interval == 300 and config.x.max_poll_interval == 3600
    assert config.policy_for("wohnen-eg").retweets == "link"
    assert config.policy_for("wohnen-eg").visibility.backfill == "unlisted"  # inherited from defaults
    assert ("hostsharing", "hostsharing@geno.social") in config.defaults.mention_map
    text = (ROOT / "config.example.yaml").read_text()
    shown = effective(config)

    def keys(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if k in ("config_file", "organisations") or prefix.endswith("map."):
                continue
            out.append(k)
            if isinstance(v, dict) and k != "map":
                out.extend(keys(v, prefix + k + "."))
        return out

    for key in keys(shown):
        assert f"{key}:" in text, f"config.example.yaml does not document {key}"


def test_minimal_config_uses_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "database: ledger.db\n")
    assert config.database == (tmp_path / "ledger.db").resolve()
    assert config.x.api_base_url == "https://api.x.com"
    assert config.mastodon.default_instance == "https://geno.social"
    assert config.daemon.concurrency == 4
    assert config.defaults.mentions_unmapped == "plain"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  pol_interval: 60\n")
    assert "x.pol_interval" in msg and "unknown key" in msg and "did you mean 'poll_interval'" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nmastadon: {}\n")
    assert "mastadon" in msg and "did you mean 'mastodon'" in msg


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\ndaemon:\n  concurrency: many\n")
    assert "daemon.concurrency" in msg and "expected a whole number" in msg and "'many'" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  media_hosts: pbs.twimg.com\n")
    assert "x.media_hosts" in msg and "expected a list of strings" in msg
    msg = error(tmp_path, "database: l.db\ndefaults:\n  retweets: sometimes\n")
    assert "defaults.retweets" in msg and "auto, boost, link, skip" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: soon\n")
    assert "x.poll_interval" in msg and "duration" in msg
    msg = error(tmp_path, "database: l.db\norganisations:\n  coop:\n    visibility:\n      original: everyone\n")
    assert "organisations.coop.visibility.original" in msg and "public, unlisted, private, direct" in msg


def test_missing_required_value(tmp_path: Path) -> None:
    msg = error(tmp_path, "x:\n  poll_interval: 60\n")
    assert "database" in msg and "missing required value" in msg


def test_unset_environment_variable(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: ${NOT_SET_ANYWHERE}\n")
    assert "x.bearer_token" in msg and "${NOT_SET_ANYWHERE}" in msg and "not set" in msg


def test_environment_variables_expand(tmp_path: Path) -> None:
    config = load(tmp_path, "database: ${STATE}/l.db\nx:\n  bearer_token: ${TOK}\n", {"STATE": str(tmp_path / "s"), "TOK": "abc"})
    assert config.database == tmp_path / "s" / "l.db"
    assert config.x.bearer_token == "abc"


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "bearer").write_text("from-a-file\n")
    config = load(tmp_path, f"database: l.db\nx:\n  bearer_token_file: {tmp_path / 'bearer'}\n")
    assert config.x.bearer_token == "from-a-file"


def test_unreadable_secret_file(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token_file: /nonexistent/credential\n")
    assert "x.bearer_token_file" in msg and "/nonexistent/credential" in msg and "cannot read" in msg


def test_secret_inline_and_file_conflict(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: a\n  bearer_token_file: b\n")
    assert "not both" in msg


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: [60\n  timeout: 3\n")
    assert "malformed YAML" in msg and "line " in msg and "column " in msg


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: a.db\ndatabase: b.db\n")
    assert "duplicate key 'database'" in msg and "line 2" in msg


def test_bad_urls_and_ranges(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nmastodon:\n  default_instance: geno.social\n")
    assert "mastodon.default_instance" in msg and "URL" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: 10m\n  max_poll_interval: 5m\n")
    assert "x.max_poll_interval" in msg
    msg = error(tmp_path, "database: l.db\ndaemon:\n  concurrency: 0\n")
    assert "daemon.concurrency" in msg and "at least 1" in msg
    msg = error(tmp_path, "database: l.db\ndefaults:\n  mentions:\n    map:\n      someone: not-an-account\n")
    assert "defaults.mentions.map.someone" in msg and "user@instance" in msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in msg


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(exc.value) and "not found" in str(exc.value)


def test_config_is_found_via_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", str(tmp_path / "env.yaml"))
    assert find_config(None) == tmp_path / "env.yaml"
    assert find_config("given.yaml") == Path("given.yaml")
    monkeypatch.delenv("BRIDGE_CONFIG")
    assert find_config(None) == Path("config.yaml")


def test_per_org_overrides_inherit_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "database: l.db\ndefaults:\n  replies: none\n  mentions:\n    map: {a: a@x.social}\n"
        "organisations:\n  coop:\n    mentions:\n      map: {B: b@y.social}\n",
    )
    p = config.policy_for("coop")
    assert p.replies == "none"
    assert dict(p.mention_map) == {"a": "a@x.social", "b": "b@y.social"}
    assert config.policy_for("other") == config.defaults


def test_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\n")
    with pytest.raises(AttributeError):
        config.database = Path("x")  # type: ignore[misc]


def test_effective_masks_secrets(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\nx:\n  bearer_token: AAAAsupersecret\n")
    assert "AAAAsupersecret" not in repr(effective(config))
    assert "AAAAsupersecret" not in repr(config)
    assert os.fspath(config.database).endswith("l.db")
    assert parse_config("database: x.db", tmp_path / "c.yaml", {}).database.name == "x.db"


# ---------------------------------------------------------------------------
# Values that load but would break at run time (issue 12, item 7)


@pytest.mark.parametrize("key", ["x.timeout", "mastodon.timeout", "mastodon.media_poll_timeout", "daemon.shutdown_grace"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_timeouts_are_refused_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    section, name = key.split(".")
    msg = error(tmp_path, f"database: l.db\n{section}:\n  {name}: {value}\n")
    assert key in msg and ("finite" in msg or "at least" in msg)


@pytest.mark.parametrize(
    "section, name, value",
    [
        ("x", "poll_interval", "100000000000000000000"),
        ("x", "max_poll_interval", "99999999999999999999d"),
        ("daemon", "jitter", "100000000000000000000"),
        ("daemon", "refresh_interval", "1000000000000h"),
        ("x", "timeout", "100000000000000000000"),
        ("daemon", "shutdown_grace", "1" + "0" * 400),
        ("daemon", "concurrency", "100000000000000000000"),
    ],
)
def test_values_too_large_to_run_with_are_refused_naming_the_key(tmp_path: Path, section: str, name: str, value: str) -> None:
    """A 10^20 s poll interval loaded fine and `bridge run` then died with an OverflowError."""
    msg = error(tmp_path, f"database: l.db\n{section}:\n  {name}: {value}\n")
    assert f"{section}.{name}" in msg and "at most" in msg
    assert len(msg) < 300, "a huge number is shown by its size, not in full"


def test_the_longest_allowed_values_still_work(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\nx:\n  poll_interval: 30d\n  max_poll_interval: 30d\n  timeout: 86400\n"
                            "daemon:\n  shutdown_grace: 86400\n  concurrency: 256\n")
    assert config.x.max_poll_interval == 30 * 86400 and config.daemon.shutdown_grace == 86400.0


def test_an_empty_token_or_token_file_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: ''\n")
    assert "x.bearer_token" in msg and "empty" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: ${X_BEARER_TOKEN}\n", {"X_BEARER_TOKEN": "  "})
    assert "x.bearer_token" in msg and "empty" in msg
    (tmp_path / "bearer").write_text("\n\n")
    msg = error(tmp_path, f"database: l.db\nx:\n  bearer_token_file: {tmp_path / 'bearer'}\n")
    assert "x.bearer_token_file" in msg and "empty" in msg and str(tmp_path / "bearer") in msg
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token_file: /dev/null\n")
    assert "x.bearer_token_file" in msg and "empty" in msg
    # Left out entirely it is simply not set (archive backfills need no X token).
    assert load(tmp_path, "database: l.db\n").x.bearer_token == ""


def test_a_token_file_that_is_not_utf8_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bearer").write_bytes(b"\xff\xfe\x00A\x00A\x00")  # UTF-16, as some editors save
    msg = error(tmp_path, f"database: l.db\nx:\n  bearer_token_file: {tmp_path / 'bearer'}\n")
    assert "x.bearer_token_file" in msg and "not UTF-8" in msg


def test_a_token_with_a_line_break_inside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bearer").write_text("AAAA-first-token\nAAAA-second-token\n")
    msg = error(tmp_path, f"database: l.db\nx:\n  bearer_token_file: {tmp_path / 'bearer'}\n")
    assert "x.bearer_token_file" in msg and "line breaks" in msg and "AAAA" not in msg


def test_a_token_file_that_never_ends_is_read_only_up_to_a_cap(tmp_path: Path) -> None:
    """/dev/zero (a wrong path in a hurry) used to be read until memory ran out."""
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token_file: /dev/zero\n")
    assert "x.bearer_token_file" in msg and "/dev/zero" in msg and "larger than" in msg


@pytest.mark.parametrize(
    "text, key",
    [
        ("database: l.db\nx:\n  media_hosts: " + "[" * 5000 + "]" * 5000 + "\n", "x.media_hosts"),
        ("database: l.db\nx: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "x.a"),
        ("database: l.db\norganisations:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)), "organisations.k0"),
    ],
)
def test_deeply_nested_yaml_is_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    msg = error(tmp_path, text)
    assert key in msg and "nested more than" in msg and "line " in msg


def test_credentials_in_urls_are_masked_and_known_to_the_log_masker(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\nx:\n  api_base_url: https://proxy-user:hunter2-secret@x-proxy.example.org/\n"
                            "mastodon:\n  default_instance: https://admin:s3cret-pass@geno.social\n")
    assert config.x.api_base_url == "https://proxy-user:hunter2-secret@x-proxy.example.org"  # used as given
    shown = effective(config)
    assert shown["x"]["api_base_url"] == "https://***@x-proxy.example.org"
    assert shown["mastodon"]["default_instance"] == "https://***@geno.social"
    assert "hunter2-secret" not in repr(shown) and "s3cret-pass" not in repr(shown)
    assert {"hunter2-secret", "s3cret-pass"} <= set(config.secrets)
    msg = error(tmp_path, "database: l.db\nx:\n  api_base_url: ftp://proxy-user:hunter2-secret@x-proxy.example.org\n")
    assert "x.api_base_url" in msg and "hunter2-secret" not in msg


def test_thread_cap_and_media_deadline_have_defaults_and_are_checked(tmp_path: Path) -> None:
    """Issue 12 item 5: max_thread_parts (a policy key) and x.media_download_deadline."""
    config = load(tmp_path, "database: l.db\nx:\n  media_download_deadline: 2m\norganisations:\n  a:\n    max_thread_parts: 3\n")
    assert config.defaults.max_thread_parts == 10 and config.policy_for("a").max_thread_parts == 3
    assert config.x.media_download_deadline == 120 and load(tmp_path, "database: l.db\n").x.media_download_deadline == 600
    msg = error(tmp_path, "database: l.db\ndefaults:\n  max_thread_parts: 0\n")
    assert "defaults.max_thread_parts" in msg and "at least 1" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  media_download_deadline: soon\n")
    assert "x.media_download_deadline" in msg


def test_edits_where_impossible_defaults_to_leave_and_is_checked(tmp_path: Path) -> None:
    """Issue 16: what an edit does on a target without edits (Bluesky), per organisation."""
    config = load(tmp_path, "database: l.db\norganisations:\n  a:\n    edits_where_impossible: repost\n")
    assert config.defaults.edits_where_impossible == "leave" and config.policy_for("a").edits_where_impossible == "repost"
    assert effective(config)["organisations"]["a"]["edits_where_impossible"] == "repost"
    msg = error(tmp_path, "database: l.db\ndefaults:\n  edits_where_impossible: delete\n")
    assert "defaults.edits_where_impossible" in msg and "repost" in msg
