"""`bridge link NAME --bluesky-target HANDLE`: a Bluesky account as a second target, on the reference PDS."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.convert.bluesky_lexicon import POST
from bridge.model import Draft
from bridge.targets.bluesky import BlueskyTarget
from geno_bridge_standins.x_api import FakeXServer
from tests.bluesky_pds import BlueskyPds
from tests.bridge_env import BridgeEnv
from tests.fixtures_x import x_server  # noqa: F401 (fixture)
from tests.mastodon_server import MastodonServer

pytestmark = pytest.mark.bluesky


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, bluesky_pds: BlueskyPds) -> BridgeEnv:  # noqa: F811
    # Handles resolve through the PDS itself here (production: the public AppView), DID documents through its PLC.
    return BridgeEnv(tmp_path, x_server, mastodon,
                     extra_config=f"bluesky:\n  plc_url: {bluesky_pds.plc_url}\n  appview_url: {bluesky_pds.url}\n")


def bridge(env: BridgeEnv, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args], input=input)


def password_file(env: BridgeEnv, password: str) -> str:
    path = env.tmp / "app-password"
    path.write_text(password + "\n")
    return str(path)


def test_linking_stores_the_did_the_pds_and_a_session_that_the_target_reuses(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    env.link("coop-a")
    did, _, app_password = bluesky_pds.create_account("coop-a-link.test")

    result = bridge(env, "link", "coop-a", "--bluesky-target", "@coop-a-link.test",
                    "--app-password-file", password_file(env, app_password))

    assert result.exit_code == 0, result.output
    assert "Linked coop-a" in result.output and "@coop-a-link.test" in result.output
    assert app_password not in result.output
    with env.ledger() as ledger:
        row = ledger.get_target("coop-a", "bluesky")
        assert ledger.get_target("coop-a", "mastodon") is not None  # the Mastodon target stays
    assert row is not None
    assert (row.kind, row.base_url, row.account_id, row.handle, row.state) == (
        "bluesky", bluesky_pds.url, did, "coop-a-link.test", "active")
    assert row.account_url == "https://bsky.app/profile/coop-a-link.test"
    stored = json.loads(row.credentials or "")
    assert stored["app_password"] == app_password and stored["session"]["did"] == did
    sent: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]})
    target = BlueskyTarget(row.base_url, row.credentials or "", account_id=row.account_id, handle=row.handle,
                           session=client)
    copy = target.publish(Draft(post_id="1", part=0, text="Hallo Bluesky", created_at=datetime.now(timezone.utc)),
                          idempotency_key="k")
    assert copy.id.startswith(f"at://{did}/{POST}/")
    assert sent == ["/xrpc/com.atproto.repo.createRecord"]  # the stored session: no second login


def test_the_app_password_is_asked_at_a_hidden_prompt(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    env.link("coop-b")
    _, _, app_password = bluesky_pds.create_account("coop-b-link.test")

    result = bridge(env, "link", "coop-b", "--bluesky-target", "coop-b-link.test", input=app_password + "\n")

    assert result.exit_code == 0, result.output
    assert "App password" in result.output and app_password not in result.output


def test_a_wrong_app_password_is_a_clear_error_and_stores_nothing(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    env.link("coop-c")
    bluesky_pds.create_account("coop-c-link.test")

    result = bridge(env, "link", "coop-c", "--bluesky-target", "coop-c-link.test",
                    "--app-password-file", password_file(env, "wrong-pass-word-1234"))

    assert result.exit_code == 2, result.output
    assert "refused the app password" in result.output and "nothing was stored" in result.output
    assert "wrong-pass-word-1234" not in result.output
    with env.ledger() as ledger:
        assert ledger.get_target("coop-c", "bluesky") is None


def test_an_unknown_handle_is_a_clear_error(env: BridgeEnv) -> None:
    env.link("coop-d")

    result = bridge(env, "link", "coop-d", "--bluesky-target", "nobody-here.test",
                    "--app-password-file", password_file(env, "aaaa-bbbb-cccc-dddd"))

    assert result.exit_code == 2, result.output
    assert "nobody-here.test" in result.output and "cannot be linked" in result.output


def test_an_organisation_that_does_not_exist_is_a_clear_error(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    _, _, app_password = bluesky_pds.create_account("coop-e-link.test")

    result = bridge(env, "link", "coop-e", "--bluesky-target", "coop-e-link.test",
                    "--app-password-file", password_file(env, app_password))

    assert result.exit_code == 2, result.output
    assert "no organisation named 'coop-e'" in result.output


def test_the_bluesky_target_is_given_alone_and_never_takes_a_password_on_the_command_line(env: BridgeEnv) -> None:
    env.link("coop-f")

    mixed = bridge(env, "link", "coop-f", "--bluesky-target", "x.test", "--x-username", "coop")
    inline = bridge(env, "link", "coop-f", "--bluesky-target", "x.test", "--app-password", "secret")

    assert mixed.exit_code == 2 and "without the source and Mastodon options" in mixed.output
    assert inline.exit_code == 2 and "No such option" in inline.output
