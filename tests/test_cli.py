"""The CLI as a user meets it: help with examples, exit codes, masked secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge import __version__
from bridge.cli import main
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA-very-secret-bearer\n{extra}")
    return p


def test_version_and_help_with_examples() -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in main.commands:
        r = runner.invoke(main, [name, "--help"])
        assert r.exit_code == 0, name
        assert "Example" in r.output, f"`bridge {name} --help` has no example"


def test_check_config_ok_masks_secrets(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(write_config(tmp_path)), "check-config"])
    assert r.exit_code == 0, r.output
    assert "AAAA-very-secret-bearer" not in r.output
    assert "configuration OK" in r.output and "bearer_token: '***" in r.output


def test_check_config_error_exit_2_without_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(write_config(tmp_path, "daemon:\n  concurency: 3\n")), "check-config"])
    assert r.exit_code == 2
    assert "daemon.concurency" in r.output and "did you mean 'concurrency'" in r.output
    assert "Traceback" not in r.output


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(tmp_path / "none.yaml"), "status"])
    assert r.exit_code == 2 and "not found" in r.output


def test_usage_error_is_exit_2() -> None:
    r = CliRunner().invoke(main, ["no-such-command"])
    assert r.exit_code == 2


def test_status_and_orgs_on_a_fresh_ledger(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    r = CliRunner().invoke(main, ["--config", str(config), "orgs"])
    assert r.exit_code == 0 and "No organisations linked yet" in r.output
    r = CliRunner().invoke(main, ["--config", str(config), "status", "--json"])
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["organisations"] == [] and data["daemon"]["healthy"] is False
    r = CliRunner().invoke(main, ["--config", str(config), "status", "--check"])
    assert r.exit_code == 1
    r = CliRunner().invoke(main, ["--config", str(config), "status", "nobody"])
    assert r.exit_code == 2 and "no organisation named 'nobody'" in r.output
    assert (tmp_path / "ledger.db").stat().st_mode & 0o777 == 0o600


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "bridge"
    if not exe.exists():
        pytest.skip("console script not installed")
    r = subprocess.run([str(exe), "--config", str(write_config(tmp_path)), "check-config"], capture_output=True, text=True, env={**os.environ}, check=False)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------
# Configuration and operations (issue 12, item 7)


@pytest.mark.parametrize(
    "extra, key",
    [
        ("  timeout: .nan\n", "x.timeout"),
        ("  poll_interval: 100000000000000000000\n", "x.poll_interval"),
        ("  media_hosts: " + "[" * 3000 + "]" * 3000 + "\n", "x.media_hosts"),
    ],
)
def test_check_config_refuses_values_that_break_at_run_time(tmp_path: Path, extra: str, key: str) -> None:
    r = CliRunner().invoke(main, ["--config", str(write_config(tmp_path, extra)), "check-config"])
    assert r.exit_code == 2 and key in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("content", [b"", b"\xff\xfeA\x00", None])
def test_check_config_refuses_an_unusable_token_file(tmp_path: Path, content: bytes | None) -> None:
    token_file = Path("/dev/zero") if content is None else tmp_path / "x-bearer-token"
    if content is not None:
        token_file.write_bytes(content)
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token_file: {token_file}\n")
    r = CliRunner().invoke(main, ["--config", str(config), "check-config"])
    assert r.exit_code == 2 and "x.bearer_token_file" in r.output and "Traceback" not in r.output, r.output


def test_check_config_masks_credentials_in_the_x_api_url(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "  api_base_url: https://proxy:hunter2-proxy-pass@x-proxy.example.org\n")
    r = CliRunner().invoke(main, ["--config", str(config), "check-config"])
    assert r.exit_code == 0, r.output
    assert "hunter2-proxy-pass" not in r.output and "https://***@x-proxy.example.org" in r.output


def test_an_x_401_says_to_fix_the_bearer_token_not_to_relink(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> None:
    """A revoked X bearer token is the operator's configuration to fix; relinking an organisation cannot help."""
    env = BridgeEnv(tmp_path, x_server, mastodon)
    org = env.link("coop-a")
    env.publish(env.tweet(org, "News from the coop"))
    env.config_path.write_text(env.config_path.read_text().replace(x_server.token, "AAAA-revoked-bearer-token"))

    def bridge(*args: str):
        return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args])

    for result in (
        bridge("poll", "--dry-run"),
        bridge("link", "coop-b", "--x-username", "coop", "--access-token", mastodon.create_account("coopb401")),
    ):
        assert result.exit_code == 2, result.output
        assert "X API" in result.output and "401" in result.output and "x.bearer_token" in result.output
        assert "bridge relink" not in result.output and "AAAA-revoked-bearer-token" not in result.output
    polled = bridge("poll")
    assert polled.exit_code == 1 and "x.bearer_token" in polled.output and "bridge relink" not in polled.output
    with env.ledger() as ledger:
        assert ledger.get_org("coop-a").state == "active"  # the organisation itself is fine
        assert ledger.get_org("coop-b") is None
    assert env.toots(org) == []


def test_a_mastodon_401_says_it_was_mastodon_and_to_relink(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> None:
    env = BridgeEnv(tmp_path, x_server, mastodon)
    result = CliRunner().invoke(main, ["--config", str(env.config_path), "link", "coop-b", "--x-username", "coop",
                                       "--access-token", "not-a-valid-token"])
    assert result.exit_code == 1 and "Mastodon" in result.output and "refused" in result.output, result.output


def test_a_full_disk_during_bridge_poll_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.ledger import Ledger

    env = BridgeEnv(tmp_path, x_server, mastodon)
    org = env.link("coop-a")
    texts = [f"Post {n} of our general assembly minutes: " + "lorem ipsum " * 18 for n in range(12)]
    for n, text in enumerate(texts):
        env.publish(env.tweet(org, text, minutes=n + 1))

    opened = Ledger.open.__func__  # type: ignore[attr-defined]

    def on_a_full_disk(cls: type[Ledger], path: Path, **kwargs: object) -> Ledger:
        """The ledger as SQLite sees it on a full disk: not one more page (deterministic, unlike a real one)."""
        ledger = opened(cls, path, **kwargs)
        pages = ledger.db.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.db.conn.execute(f"PRAGMA max_page_count = {pages}")
        return ledger

    monkeypatch.setattr(Ledger, "open", classmethod(on_a_full_disk))
    full = CliRunner().invoke(main, ["--config", str(env.config_path), "poll"])
    assert full.exit_code == 1, full.output
    assert "disk is full" in full.output and str(env.config.database) in full.output
    assert isinstance(full.exception, SystemExit), "an uncaught exception: a traceback for the operator"
    monkeypatch.undo()
    with env.ledger() as ledger:
        assert ledger.get_cursor("coop-a") == "1" and ledger.counts("coop-a")["pending"] == 0

    again = CliRunner().invoke(main, ["--config", str(env.config_path), "poll"])
    assert again.exit_code == 0 and "delivered 12" in again.output, again.output
    assert len(env.toots(org)) == 12
