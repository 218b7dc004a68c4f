"""`bridge preview`: exactly what would be posted for one post, from the archive or from X, posting nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.render import JSON_KEYS
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def run(env: BridgeEnv, *args: str):
    return CliRunner().invoke(main, ["--config", str(env.config_path), *args])


def test_preview_archive_thread_part_with_counted_length(env: BridgeEnv, fixtures_dir: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop.zip"
    r = run(env, "preview", "--archive", str(archive), "--post", "1638548859277197939")  # T03: escapes
    assert r.exit_code == 0, r.output
    assert "Heizkosten & Nebenkosten" in r.output and "&amp;" not in r.output
    assert "/ 500" in r.output  # counted length against the limit


def test_preview_archive_json_keys_and_media(env: BridgeEnv, fixtures_dir: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop"
    r = run(env, "preview", "--archive", str(archive), "--post", "1709617543215268789", "--json")  # T15: 4 photos
    assert r.exit_code == 0, r.output
    drafts = json.loads(r.output)
    assert len(drafts) == 1
    assert set(drafts[0]) == set(JSON_KEYS)
    assert [m["type"] for m in drafts[0]["media"]] == ["photo"] * 4
    assert "t.co" not in drafts[0]["text"]
    assert drafts[0]["length"] > 0 and drafts[0]["visibility"] == "unlisted"  # archive posts are backfill


def test_preview_self_thread_reply_names_its_parent(env: BridgeEnv, fixtures_dir: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop.zip"
    r = run(env, "preview", "--archive", str(archive), "--post", "1661820039082832020", "--json")  # T08b
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["in_reply_to"] == "1661819687590113148"


def test_preview_live_post_of_a_linked_org(env: BridgeEnv) -> None:
    a = env.link("coop-preview")
    t = env.publish(env.tweet(a, "Preview me https://example.org/a", urls=["https://example.org/a"]))
    before = env.x.count("/2/")
    r = run(env, "preview", "--org", "coop-preview", "--post", t["id"], "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["text"] == "Preview me https://example.org/a"
    assert env.x.count("/2/") == before + 1  # one request, around the post's id
    assert env.toots(a) == []  # nothing posted


def test_preview_bad_input(env: BridgeEnv, fixtures_dir: Path, tmp_path: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop.zip"
    r = run(env, "preview", "--archive", str(archive), "--post", "1")
    assert r.exit_code == 2 and "no post with id 1" in r.output
    r = run(env, "preview", "--post", "1")
    assert r.exit_code == 2 and "exactly one of" in r.output
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello")
    r = run(env, "preview", "--archive", str(not_archive), "--post", "1")
    assert r.exit_code == 2 and "not an X archive" in r.output
    r = run(env, "preview", "--org", "nobody", "--post", "1")
    assert r.exit_code == 2 and "no organisation named 'nobody'" in r.output
