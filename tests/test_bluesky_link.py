"""`bridge link NAME --bluesky HANDLE_OR_DID` against the reference PDS (handle -> DID -> PDS, real HTTP), and adding
a Bluesky source to an organisation that is linked already (contract 2: no new Mastodon authorisation)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.sources.bluesky import BlueskyCursor
from bridge.targets.mastodon import html_to_text
from tests.bluesky_pds import BlueskyPds
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer
from tests.test_bluesky_pds import auth
from tests.test_bluesky_source import POST, create, rkey

pytestmark = pytest.mark.bluesky


_n = itertools.count()


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, bluesky_pds: BlueskyPds) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon, extra_config=(
        f"bluesky:\n  plc_url: {bluesky_pds.plc_url}\n  appview_url: {bluesky_pds.url}\n  timeout: 10\n"))


def bridge(env: BridgeEnv, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args], input=input)


def handle() -> str:
    return f"coop-link{next(_n)}.test"


def toots(env: BridgeEnv, name: str) -> list[str]:
    with env.ledger() as ledger:
        org = ledger.get_org(name)
    assert org is not None and org.token
    return [html_to_text(s["content"]) for s in reversed(env.mastodon.statuses(org.token, org.account_id))]


def test_linking_a_bluesky_handle_starts_after_its_newest_post_and_bridges_each_new_post_once(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    old = create(bluesky_pds, did, jwt, POST, {"text": "Something from last year"})
    token = env.mastodon.create_account(f"bsky{next(_n)}")

    result = bridge(env, "link", "bsky-coop", "--bluesky", f"@{h}", "--access-token", token)

    assert result.exit_code == 0, result.output
    assert f"Linked bsky-coop: Bluesky @{h} ({did}, PDS {bluesky_pds.url}) -> @" in result.output
    assert f"New posts after its newest post {rkey(old)} ('Something from last year') will be bridged" in result.output
    with env.ledger() as ledger:
        src = ledger.get_source("bsky-coop")
    assert src is not None and (src.kind, src.account_id, src.handle) == ("bluesky", did, h)
    assert BlueskyCursor.load(src.cursor).rev >= rkey(old)

    assert "fetched 0" in bridge(env, "poll", "bsky-coop").output  # nothing old floods
    create(bluesky_pds, did, jwt, POST, {"text": "Fresh news from the co-op"})
    assert "delivered 1" in bridge(env, "poll", "bsky-coop").output
    assert "fetched 0" in bridge(env, "poll", "bsky-coop").output
    assert toots(env, "bsky-coop") == ["Fresh news from the co-op"]


def test_linking_by_did_an_account_without_posts_says_every_post_from_now_on_is_bridged(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    h = handle()
    did, _, _ = bluesky_pds.create_account(h)
    token = env.mastodon.create_account(f"bsky{next(_n)}")
    result = bridge(env, "link", "by-did", "--bluesky", did, "--access-token", token)
    assert result.exit_code == 0, result.output
    assert f"Bluesky @{h} has no posts yet: every post from now on will be bridged." in result.output


def test_an_unknown_handle_an_unreachable_plc_and_a_did_web_are_clear_errors_and_store_nothing(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    token = env.mastodon.create_account(f"bsky{next(_n)}")
    unknown = bridge(env, "link", "nobody", "--bluesky", "nobody-at-all.test", "--access-token", token)
    assert unknown.exit_code == 2 and "Bluesky account nobody-at-all.test: resolving the handle" in unknown.output
    not_a_handle = bridge(env, "link", "nobody", "--bluesky", "not a handle", "--access-token", token)
    assert not_a_handle.exit_code == 2 and "Bluesky handle 'not a handle' is not valid" in not_a_handle.output

    did, _, _ = bluesky_pds.create_account(handle())
    env.write_config("bluesky:\n  plc_url: http://127.0.0.1:9\n  appview_url: http://127.0.0.1:9\n  timeout: 2\n")
    down = bridge(env, "link", "nobody", "--bluesky", did, "--access-token", token)
    assert down.exit_code == 1, down.output
    assert f"Bluesky account {did}: reading its DID document (http://127.0.0.1:9/{did}): connection failed" in down.output
    assert "nobody was not linked (nothing stored)" in down.output

    web = bridge(env, "link", "nobody", "--bluesky", "did:web:127.0.0.1%3A9", "--access-token", token)
    assert web.exit_code == 1 and "Bluesky account did:web:127.0.0.1%3A9: reading its DID document" \
        " (https://127.0.0.1:9/.well-known/did.json)" in web.output
    path = bridge(env, "link", "nobody", "--bluesky", "did:web:example.org:users:coop", "--access-token", token)
    assert path.exit_code == 2 and "did:web only for a whole host" in path.output
    for result in (unknown, not_a_handle, down, web, path):
        assert "Traceback" not in result.output
    with env.ledger() as ledger:
        assert ledger.get_org("nobody") is None


def test_adding_a_bluesky_account_to_a_linked_organisation_needs_no_new_authorisation(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    org = env.link("twosources")
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    old = create(bluesky_pds, did, jwt, POST, {"text": "before the link"})

    added = bridge(env, "link", "twosources", "--bluesky", h)  # no --access-token, no code: no prompt either

    assert added.exit_code == 0, added.output
    assert f"Added Bluesky @{h} ({did}, PDS {bluesky_pds.url}) to twosources as source 'bluesky': its posts go to" \
        f" @{org.acct} (linked already, no new authorisation)." in added.output
    with env.ledger() as ledger:
        sources = {s.name: s for s in ledger.sources("twosources")}
        assert ledger.get_org("twosources").token == org.token  # type: ignore[union-attr]
    assert (sources["x"].kind, sources["x"].account_id) == ("x", org.x_user_id)  # the X source stays
    assert (sources["bluesky"].kind, sources["bluesky"].account_id, sources["bluesky"].handle) == ("bluesky", did, h)
    assert BlueskyCursor.load(sources["bluesky"].cursor).rev >= rkey(old)  # starts after its newest post

    again = bridge(env, "link", "twosources", "--bluesky", did)
    assert again.exit_code == 0 and "already (source 'bluesky'); nothing changed" in again.output

    token = bridge(env, "link", "twosources", "--bluesky", h, "--access-token", "abc")
    assert token.exit_code == 2 and "--access-token: organisation 'twosources' is linked already" in token.output
    assert "bridge relink twosources" in token.output

    other = env.link("othercoop")
    taken = bridge(env, "link", other.name, "--bluesky", h)
    assert taken.exit_code == 2 and f"the Bluesky @{h} is already linked as organisation 'twosources'" in taken.output


def test_replacing_the_bluesky_account_of_an_organisation_asks_first(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    env.link("switcher")
    first, second = handle(), handle()
    bluesky_pds.create_account(first)
    did2, _, _ = bluesky_pds.create_account(second)
    assert bridge(env, "link", "switcher", "--bluesky", first).exit_code == 0
    declined = bridge(env, "link", "switcher", "--bluesky", second, input="n\n")
    assert declined.exit_code == 1 and f"reads Bluesky @{first}. Replace it with Bluesky @{second}" in declined.output
    replaced = bridge(env, "link", "switcher", "--bluesky", second, "--yes")
    assert replaced.exit_code == 0 and f"Replaced Bluesky @{first} of switcher with Bluesky @{second}" in replaced.output
    with env.ledger() as ledger:
        src = ledger.get_source("switcher", "bluesky")
    assert src is not None and src.account_id == did2


def test_x_user_id_with_a_feed_or_a_bluesky_account_is_a_usage_error(env: BridgeEnv) -> None:
    for option, value in (("--feed", "http://127.0.0.1:9/feed"), ("--bluesky", "coop.bsky.social")):
        result = bridge(env, "link", "coop", option, value, "--x-user-id", "123")
        assert result.exit_code == 2 and f"--x-user-id is the id of the X account given with --x-username;" \
            f" it means nothing with {option}" in result.output
    several = bridge(env, "link", "coop", "--feed", "http://127.0.0.1:9/feed", "--bluesky", "coop.bsky.social")
    assert several.exit_code == 2 and "--feed and --bluesky were given" in several.output


def test_preview_shows_what_a_bluesky_post_would_become_by_record_key_uri_or_url(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    ref = create(bluesky_pds, did, jwt, POST, {"text": "Open day on Saturday, everyone is welcome"})
    url = f"https://bsky.app/profile/{h}/post/{rkey(ref)}"
    for given in (rkey(ref), ref["uri"], url):
        result = bridge(env, "preview", "--bluesky", h, "--post", given)
        assert result.exit_code == 0, result.output
        assert "Open day on Saturday, everyone is welcome" in result.output
    missing = bridge(env, "preview", "--bluesky", did, "--post", "3aaaaaaaaaaaa")
    assert missing.exit_code == 2 and f"Bluesky account {did}: no post or repost with record key '3aaaaaaaaaaaa'" \
        in missing.output
    both = bridge(env, "preview", "--bluesky", h, "--feed", "http://127.0.0.1:9/f", "--post", "x")
    assert both.exit_code == 2 and "not --feed and --bluesky" in both.output


def test_a_bluesky_backfill_brings_over_the_posts_from_before_the_link_oldest_first_once(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    create(bluesky_pds, did, jwt, POST, {"text": "First of all"})
    create(bluesky_pds, did, jwt, POST, {"text": "Then this"})
    token = env.mastodon.create_account(f"bsky{next(_n)}")
    assert bridge(env, "link", "bsky-history", "--bluesky", h, "--access-token", token).exit_code == 0

    done = bridge(env, "backfill", "bsky-history", "--api", "--yes", "--pace", "0")

    assert done.exit_code == 0, done.output
    assert toots(env, "bsky-history") == ["First of all", "Then this"]
    again = bridge(env, "backfill", "bsky-history", "--api", "--yes", "--pace", "0")
    assert again.exit_code == 0 and "nothing to bring over" in again.output
    assert "fetched 0" in bridge(env, "poll", "bsky-history").output


def test_a_repost_of_another_linked_organisations_bridged_post_boosts_its_toot(
    env: BridgeEnv, bluesky_pds: BlueskyPds
) -> None:
    names = {}
    for name in ("bsky-solar", "bsky-housing"):
        h = handle()
        did, jwt, _ = bluesky_pds.create_account(h)
        token = env.mastodon.create_account(f"bsky{next(_n)}")
        assert bridge(env, "link", name, "--bluesky", h, "--access-token", token).exit_code == 0
        names[name] = (did, jwt)
    solar_did, solar_jwt = names["bsky-solar"]
    housing_did, housing_jwt = names["bsky-housing"]
    news = create(bluesky_pds, solar_did, solar_jwt, POST, {"text": "Our 100th rooftop is online"})
    assert "delivered 1" in bridge(env, "poll", "bsky-solar").output
    create(bluesky_pds, housing_did, housing_jwt, "app.bsky.feed.repost", {"subject": news})

    assert "delivered 1" in bridge(env, "poll", "bsky-housing").output

    with env.ledger() as ledger:
        solar, housing = ledger.get_org("bsky-solar"), ledger.get_org("bsky-housing")
    assert solar is not None and housing is not None and housing.token
    [boost] = env.mastodon.statuses(housing.token, housing.account_id)
    [original] = env.mastodon.statuses(solar.token or "", solar.account_id)
    assert boost["reblog"]["id"] == original["id"]


def test_relinking_a_bluesky_organisation_keeps_its_source_and_cursor(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    token = env.mastodon.create_account(f"bsky{next(_n)}")
    assert bridge(env, "link", "relinked", "--bluesky", h, "--access-token", token).exit_code == 0
    create(bluesky_pds, did, jwt, POST, {"text": "read before the relink"})
    assert "delivered 1" in bridge(env, "poll", "relinked").output
    with env.ledger() as ledger:
        before = ledger.get_source("relinked")

    result = bridge(env, "relink", "relinked", "--access-token", token)

    assert result.exit_code == 0, result.output
    with env.ledger() as ledger:
        after = ledger.get_source("relinked")
    assert before is not None and after is not None
    assert (after.kind, after.account_id, after.handle, after.cursor) == ("bluesky", did, h, before.cursor)
    assert "fetched 0" in bridge(env, "poll", "relinked").output


def test_an_added_bluesky_source_is_polled_next_to_the_x_account(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    org = env.link("both")
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    create(bluesky_pds, did, jwt, POST, {"text": "Before the link"})
    assert bridge(env, "link", "both", "--bluesky", h).exit_code == 0
    assert "fetched 0" in bridge(env, "poll", "both").output

    create(bluesky_pds, did, jwt, POST, {"text": "Now on Bluesky too"})
    env.publish(env.tweet(org, "Still on X"))
    poll = bridge(env, "poll", "both")

    assert poll.exit_code == 0, poll.output
    assert sorted(toots(env, "both")) == ["Now on Bluesky too", "Still on X"]


def test_a_post_deleted_on_bluesky_deletes_its_toot(env: BridgeEnv, bluesky_pds: BlueskyPds) -> None:
    h = handle()
    did, jwt, _ = bluesky_pds.create_account(h)
    token = env.mastodon.create_account(f"bsky{next(_n)}")
    assert bridge(env, "link", "deleter", "--bluesky", h, "--access-token", token).exit_code == 0
    create(bluesky_pds, did, jwt, POST, {"text": "This stays"})
    gone = create(bluesky_pds, did, jwt, POST, {"text": "This was a mistake"})
    assert "delivered 2" in bridge(env, "poll", "deleter").output
    assert toots(env, "deleter") == ["This stays", "This was a mistake"]

    r = bluesky_pds.client.post(bluesky_pds.xrpc("com.atproto.repo.deleteRecord"), headers=auth(jwt),
                                json={"repo": did, "collection": POST, "rkey": rkey(gone)})
    assert r.status_code == 200, r.text
    poll = bridge(env, "poll", "deleter")

    assert poll.exit_code == 0, poll.output
    assert toots(env, "deleter") == ["This stays"]
    assert "fetched 0" in bridge(env, "poll", "deleter").output
    assert toots(env, "deleter") == ["This stays"]
