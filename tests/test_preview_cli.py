"""`bridge preview`: exactly what would be posted for one post, from the archive or from X, posting nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.ledger import TargetAccount
from bridge.policy import InstanceLimits
from bridge.render import JSON_KEYS
from bridge.targets.base import limits_to_dict
from tests.archive_builder import USERNAME, archive_tweet, build_archive
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


def test_preview_of_a_recorded_post_shows_each_targets_drafts_and_names_the_target(env: BridgeEnv) -> None:
    a = env.link("coop-targets")
    env.add_target(a, env.mastodon, name="second")
    now = datetime.now(timezone.utc)
    with env.ledger() as ledger:  # the second instance allows 100 characters: its drafts are a thread
        ledger.update_target("coop-targets", now, target="second", limits=limits_to_dict(InstanceLimits(max_characters=100)))
        ledger.add_target(TargetAccount("coop-targets", "bluesky", "bluesky", "http://127.0.0.1:9", "did:plc:coop",
                                        "coop.bsky.social", "https://bsky.app/profile/coop.bsky.social", "session"), now)
    text = " ".join(["Die Mitgliederversammlung beschließt die Sanierung der Häuser am Fluss."] * 3)
    t = env.publish(env.tweet(a, text))
    with env.ledger() as ledger:  # recorded, not delivered
        env.pipeline(ledger).cycle("coop-targets", poll=True, deliver=False)
        assert ledger.get_post("coop-targets", t["id"], target="second") is not None
    before = env.x.count("/2/")

    r = run(env, "preview", "--org", "coop-targets", "--post", t["id"])
    assert r.exit_code == 0, r.output
    assert env.x.count("/2/") == before and env.toots(a) == []  # the ledger's copy; nothing posted
    headers = [line for line in r.output.splitlines() if line.startswith("=== target ")]
    assert headers == [f"=== target mastodon: @{a.acct}@{env.mastodon.base_url.split('://')[1]}",
                       "=== target bluesky: bluesky coop.bsky.social", f"=== target second: @{headers[2].split('@', 1)[1]}"]
    mastodon_part = r.output.split("=== target bluesky")[0]
    second_part = r.output.split("=== target second")[1]
    assert "draft 1/1 " in mastodon_part and "/ 500" in mastodon_part
    assert "draft 1/3 " in second_part and "/ 100" in second_part

    r = run(env, "preview", "--org", "coop-targets", "--post", t["id"], "--json")
    drafts = json.loads(r.output)
    by_target = {name: [d for d in drafts if d["target"] == name] for name in ("mastodon", "second")}
    assert len(by_target["mastodon"]) == 1 and len(by_target["second"]) == 3
    assert by_target["mastodon"][0]["text"] == text


def test_preview_bad_input(env: BridgeEnv, fixtures_dir: Path, tmp_path: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop.zip"
    r = run(env, "preview", "--archive", str(archive), "--post", "1")
    assert r.exit_code == 2 and "no post with id 1" in r.output
    r = run(env, "preview", "--post", "1")
    assert r.exit_code == 2 and "give --archive PATH" in r.output and "or --org NAME" in r.output
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello")
    r = run(env, "preview", "--archive", str(not_archive), "--post", "1")
    assert r.exit_code == 2 and "not an X archive" in r.output
    r = run(env, "preview", "--org", "nobody", "--post", "1")
    assert r.exit_code == 2 and "no organisation named 'nobody'" in r.output


# --- issue 12 item 8: preview tells the truth --------------------------------------------------

T03 = "1638548859277197939"  # an ordinary post of the sample archive
T08B = "1661820039082832020"  # a self-reply (thread part)
RT_UNKNOWN = "1674672877940463297"  # an archive retweet of @GenoSocialHH: the archive gives no id


def test_preview_archive_post_with_org_applies_that_organisations_policies(tmp_path: Path, x_server: FakeXServer,
                                                                           mastodon: MastodonServer,
                                                                           fixtures_dir: Path) -> None:
    policy = "organisations:\n  wgn:\n    footer: 'Original: {url}'\n    replies: none\n    visibility:\n      backfill: private\n"
    env = BridgeEnv(tmp_path, x_server, mastodon, extra_config=policy)
    env.link("wgn", "WohnGenoNord", x_user_id="1400000000000000001")
    archive = str(fixtures_dir / "x-archive" / "sample-coop.zip")

    [plain] = json.loads(run(env, "preview", "--archive", archive, "--post", T03, "--json").output)
    r = run(env, "preview", "--archive", archive, "--org", "wgn", "--post", T03, "--json")
    assert r.exit_code == 0, r.output
    [draft] = json.loads(r.output)
    assert draft["text"] == plain["text"] + f"\n\nOriginal: https://x.com/WohnGenoNord/status/{T03}"
    assert (plain["visibility"], draft["visibility"]) == ("unlisted", "private")

    r = run(env, "preview", "--archive", archive, "--org", "wgn", "--post", T08B, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["skipped"] == f"post {T08B}: reply (policy replies: none)"
    r = run(env, "preview", "--archive", archive, "--org", "wgn", "--post", T08B)
    assert f"SKIPPED: post {T08B}: reply (policy replies: none)" in r.output
    r = run(env, "preview", "--archive", archive, "--org", "nobody", "--post", T08B)
    assert r.exit_code == 2 and "no organisation named 'nobody'" in r.output


def test_preview_json_of_a_skipped_post_prints_its_reason(env: BridgeEnv, fixtures_dir: Path) -> None:
    archive = fixtures_dir / "x-archive" / "sample-coop.zip"
    r = run(env, "preview", "--archive", str(archive), "--post", RT_UNKNOWN, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["post_id"] == RT_UNKNOWN and out["drafts"] == []
    assert out["skipped"] == (
        f"post {RT_UNKNOWN}: retweet of @GenoSocialHH's post (the source does not give its id): not bridged,"
        " nothing to boost (policy retweets: auto)"
    )


def test_preview_says_when_a_huge_post_is_cut_after_max_thread_parts(tmp_path: Path, x_server: FakeXServer,
                                                                    mastodon: MastodonServer) -> None:
    """Issue 12 item 5: a 400,000-character post is 10 toots, not 834, and preview says why."""
    env = BridgeEnv(tmp_path, x_server, mastodon)
    huge = archive_tweet("1500000000000000009", ("Ein Satz über die Genossenschaft. " * 12_000).strip())
    path = build_archive(tmp_path / "arch", [huge])
    r = run(env, "preview", "--archive", str(path), "--post", "1500000000000000009")
    assert r.exit_code == 0, r.output
    assert "--- draft 10/10 (status)" in r.output and "draft 11/" not in r.output
    assert "note: post 1500000000000000009: the text needs more than 10 toots; cut after 10 (max_thread_parts: 10)" in r.output
    assert f"  | https://x.com/{USERNAME}/status/1500000000000000009" in r.output
