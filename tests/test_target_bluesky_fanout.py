"""Fan-out end to end: one organisation, a Mastodon target (mastodon-mock) and a Bluesky target (the
reference PDS); posts from the fake X API go to both, exactly once on each, also when the real
`bridge poll` is killed with SIGKILL at each crash point (as tests/test_crash.py does for Mastodon).

The mix is the held-out scenario's: plain text with emoji, a language, a photo with alt text, a long
post (a thread), a self-reply, a mention of another linked organisation, a quote and a retweet of
that organisation's bridged post.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge import link_bluesky
from bridge.convert.bluesky_lexicon import POST, REPOST
from bridge.demo import JPEG
from bridge.targets.mastodon import html_to_text
from geno_bridge_standins.x_api import FakeXServer, make_media
from tests.bluesky_pds import BlueskyPds
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fixtures_x import x_server  # noqa: F401 (fixture)
from tests.mastodon_server import MastodonServer

pytestmark = [pytest.mark.bluesky, pytest.mark.slow]

BRIDGE = [sys.executable, "-m", "bridge.cli"]
CRASH_POINTS = ["after_fetch", "before_cursor", "after_record", "after_media_upload", "after_status_post", "mid_thread"]


@dataclass
class Org:
    x: LinkedOrg
    did: str
    handle: str
    jwt: str  # the account's own session (the volunteer's, not the bridge's)


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, bluesky_pds: BlueskyPds) -> BridgeEnv:  # noqa: F811
    return BridgeEnv(tmp_path, x_server, mastodon,
                     extra_config=f"bluesky:\n  plc_url: {bluesky_pds.plc_url}\n  appview_url: {bluesky_pds.url}\n")


def link_both(env: BridgeEnv, pds: BlueskyPds, name: str) -> Org:
    """An organisation on X, Mastodon and Bluesky: `bridge link` for Mastodon, then --bluesky-target."""
    org = env.link(name)
    handle = f"{name}.test"
    _, jwt, app_password = pds.create_account(handle)
    with env.ledger() as ledger:
        linked = link_bluesky.link_target(ledger, env.config, name, handle, app_password, datetime.now(timezone.utc))
    return Org(org, linked.did, handle, jwt)


def poll(env: BridgeEnv, name: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    process_env = {k: v for k, v in os.environ.items() if k != "BRIDGE_TEST_CRASH_AT"}
    if crash_at:
        process_env["BRIDGE_TEST_CRASH_AT"] = crash_at
    return subprocess.run([*BRIDGE, "--config", str(env.config_path), "--log-format", "json", "poll", name],
                          capture_output=True, text=True, env=process_env, timeout=120, check=False)


def poll_until_done(env: BridgeEnv, name: str) -> None:
    for _ in range(4):
        done = poll(env, name)
        assert done.returncode == 0, done.stderr[-3000:]
        with env.ledger() as ledger:
            if not ledger.open_posts(name):
                return


def records(pds: BlueskyPds, did: str, collection: str = POST) -> list[dict[str, Any]]:
    got = pds.client.get(pds.xrpc("com.atproto.repo.listRecords"),
                         params={"repo": did, "collection": collection, "limit": 100, "reverse": "true"})
    assert got.status_code == 200, got.text
    return list(got.json()["records"])


def publish_mix(env: BridgeEnv, org: Org, other: Org, other_post: dict[str, Any], prefix: str) -> dict[str, str]:
    """What the organisation posts on X; returns the texts each target must show once."""
    x = org.x
    plain = f"{prefix}: Frohe Festtage 🎉👨‍👩‍👧‍👦 an alle Mitglieder!"
    env.publish(env.tweet(x, plain, lang="de"))
    photo_key = f"3_{prefix}"
    env.x.put_media(f"{photo_key}.jpg", JPEG, "image/jpeg")
    env.publish(env.tweet(x, f"{prefix}: the new roof", media_keys=[photo_key]),
                media=[_media(env, photo_key, "Solar panels on the roof")])
    long_text = " ".join(f"{prefix} sentence {i} about the cooperative's general assembly." for i in range(35))
    thread_head = env.tweet(x, long_text[:270] + "…", note_tweet=long_text)
    env.publish(thread_head)
    env.publish(env.tweet(x, f"{prefix}: and one more thing", in_reply_to=thread_head["id"], replied_user_id=x.x_user_id))
    mention = f"{prefix}: thanks to @{other.x.x_username} for the help"
    env.publish(env.tweet(x, mention, mentions=[(other.x.x_username, other.x.x_user_id)]))
    env.publish(env.tweet(x, f"{prefix}: look at this", quoted=other_post["id"]), referenced=[other_post])
    env.publish(env.tweet(x, f"RT @{other.x.x_username}: {other_post['text']}", retweeted=other_post["id"],
                          mentions=[(other.x.x_username, other.x.x_user_id)]), referenced=[other_post])
    french = f"{prefix}: assemblée générale vendredi à 18 h"
    env.publish(env.tweet(x, french, lang="fr"))
    return {"plain": plain, "mention": mention, "french": french, "long": long_text}


def _media(env: BridgeEnv, key: str, alt: str) -> dict[str, Any]:
    return make_media(key, "photo", base_url=env.x.base_url, name=f"{key}.jpg", alt_text=alt)


def assert_exactly_once_on_both(env: BridgeEnv, pds: BlueskyPds, org: Org, other: Org, texts: dict[str, str]) -> None:
    # Mastodon: every status once, the thread complete.
    toots = env.toots(org.x)
    contents = Counter(t["content"] for t in toots if not t.get("reblog"))
    assert max(contents.values()) == 1, f"duplicate toots: {contents.most_common(3)}"
    plain = [html_to_text(t["content"]) for t in toots if not t.get("reblog")]
    assert sum(1 for t in toots if t.get("reblog")) == 1
    # Bluesky: every record once, the thread complete, one repost of the other organisation's copy.
    posts = records(pds, org.did)
    values = [r["value"] for r in posts]
    assert max(Counter(v["text"] for v in values).values()) == 1, "duplicate Bluesky posts"
    shown = [v["text"] for v in values]
    assert texts["plain"] in shown and texts["french"] in shown
    assert [r["value"]["subject"]["uri"] for r in records(pds, org.did, REPOST)] == [
        records(pds, other.did)[0]["uri"]]
    for text in (texts["plain"], texts["french"]):
        assert any(text == p for p in plain)
    long_words = texts["long"].split()
    thread = [v["text"] for v in values if v["text"].split()[0] == long_words[0] and "sentence" in v["text"]]
    assert " ".join(thread).split() == long_words
    assert " ".join(p for p in plain if "sentence" in p).split() == long_words
    mention = next(v for v in values if "thanks to" in v["text"])
    assert mention["facets"][0]["features"][0] == {"$type": "app.bsky.richtext.facet#mention", "did": other.did}
    photo = next(v for v in values if v["text"].endswith("the new roof"))
    assert photo["embed"]["images"][0]["alt"] == "Solar panels on the roof"
    quote = next(v for v in values if v["text"].endswith("look at this"))
    assert quote["embed"]["record"]["uri"] == records(pds, other.did)[0]["uri"]
    french = next(v for v in values if v["text"] == texts["french"])
    assert french["langs"] == ["fr"]


@pytest.mark.parametrize("crash_at", [None, *CRASH_POINTS])
def test_every_post_reaches_both_targets_exactly_once_even_when_killed(
    env: BridgeEnv, bluesky_pds: BlueskyPds, crash_at: str | None
) -> None:
    tag = "clean" if crash_at is None else f"crash{CRASH_POINTS.index(crash_at)}"  # a handle's label is short
    other = link_both(env, bluesky_pds, f"o-{tag}")
    org = link_both(env, bluesky_pds, f"c-{tag}")
    other_post = env.publish(env.tweet(other.x, f"{tag}: news from the other cooperative"))
    poll_until_done(env, other.x.name)
    texts = publish_mix(env, org, other, other_post, tag)
    downloads = env.x.count("/media/")

    if crash_at is not None:
        killed = poll(env, org.x.name, crash_at)
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    poll_until_done(env, org.x.name)

    assert_exactly_once_on_both(env, bluesky_pds, org, other, texts)
    if crash_at is None:  # the photo is downloaded once and uploaded to both targets
        assert env.x.count("/media/") - downloads == 1


def test_a_revoked_app_password_puts_only_the_bluesky_target_in_needs_relink(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    org = link_both(env, bluesky_pds, "revoked")
    revoked = bluesky_pds.client.post(bluesky_pds.xrpc("com.atproto.server.revokeAppPassword"),
                                      headers={"Authorization": f"Bearer {org.jwt}"}, json={"name": "geno-bridge"})
    assert revoked.status_code == 200, revoked.text
    with env.ledger() as ledger:  # the stored access token has expired too (it lives two hours)
        row = ledger.get_target(org.x.name, "bluesky")
        assert row is not None and row.credentials
        stale = json.loads(row.credentials)
        stale["session"]["accessJwt"] = "expired"
        ledger.update_target(org.x.name, datetime.now(timezone.utc), target="bluesky", credentials=json.dumps(stale))
    env.publish(env.tweet(org.x, "Nach dem Widerruf"))

    done = poll(env, org.x.name)

    assert done.returncode in (0, 1), done.stderr[-3000:]
    with env.ledger() as ledger:
        assert ledger.get_target(org.x.name, "bluesky").state == "needs_relink"
        assert ledger.get_target(org.x.name, "mastodon").state == "active"
        assert ledger.get_org(org.x.name).state == "active"
    assert [html_to_text(t["content"]) for t in env.toots(org.x)] == ["Nach dem Widerruf"]
    assert records(bluesky_pds, org.did) == []
    assert stale["app_password"] not in done.stdout + done.stderr
