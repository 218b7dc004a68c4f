"""`bridge demo`: the whole bridge, end to end, on local stand-ins. No credentials, under a minute.

It starts mastodon-mock (a real Mastodon API server) and the built-in fake X
API on 127.0.0.1, links two demo cooperatives through the real OAuth flow,
and runs poll cycles while new posts appear on "X"; then a cooperative whose
voice is its website's feed (served locally), and one on Bluesky when the
reference PDS is installed (`python3 dev.py pds`), else one line says so.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bridge import link
from bridge.accounts import store_link, store_source_link
from bridge.config import load_config
from bridge.ledger import Ledger
from bridge.logs import configure as configure_logging
from bridge.pipeline import Pipeline
from bridge.report import org_rows
from bridge.sources.bluesky import bluesky_source
from bridge.sources.feed import FeedSource
from bridge.sources.x_api import XUser
from bridge.targets.mastodon import html_to_text
from geno_bridge_standins.bluesky import PDS_DIR, LocalPds, pds_installed
from geno_bridge_standins.feed import FeedSite
from geno_bridge_standins.mastodon import StandinError, start_mastodon_mock
from geno_bridge_standins.process import stop_process
from geno_bridge_standins.x_api import FakeXServer, make_media, make_tweet

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
# A 1x1 JPEG, so the photo upload is a real image upload.
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a1c1c"
    "20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f00000105010101010101000000"
    "00000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1"
    "082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a7374"
    "75767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1"
    "e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)


def _say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, state: Path, x: FakeXServer, mastodon: str) -> None:
        self.state = state
        self.x = x
        self.mastodon = mastodon
        self.http = httpx.Client(timeout=10)
        self.n = 1_890_000_000_000_000_000
        self.config_path = state / "config.yaml"
        self.config_path.write_text(
            f"database: {state / 'ledger.db'}\n"
            f"log_format: console\n"
            f"x:\n  bearer_token: {x.token}\n  api_base_url: {x.base_url}\n  media_hosts: ['127.0.0.1']\n  timeout: 5\n"
            f"mastodon:\n  default_instance: {mastodon}\n  client_name: geno-bridge demo\n  timeout: 10\n"
            f"defaults:\n  footer: ''\n"
        )
        self.config = load_config(self.config_path)
        self.tokens: dict[str, str] = {}

    def next_id(self) -> str:
        self.n += 1
        return str(self.n)

    def post(self, user_id: str, username: str, text: str, minutes: int, **kw: Any) -> dict[str, Any]:
        tweet = make_tweet(self.next_id(), user_id, text, created_at=T0 + timedelta(minutes=minutes), author_username=username, **kw)
        return tweet

    def authorise(self, ledger: Ledger, username: str, display: str) -> tuple[str, str, link.LinkedAccount]:
        """The real OAuth flow; the mock's "Authorize" click stands in for the volunteer."""
        self.http.post(f"{self.mastodon}/api/v1/_mock/dev_user", json={"username": username, "display_name": display}).raise_for_status()
        base = link.check_instance(self.mastodon)
        app = link.ensure_app(base, self.config.mastodon.client_name, ledger)
        request = link.authorization_request(app)
        page = self.http.post(
            f"{base}/oauth/authorize",
            data={"username": username, "client_id": app.client_id, "redirect_uri": app.redirect_uri,
                  "scope": app.scopes, "state": request.state},
        ).text
        code = page.split("Authorization code: ", 1)[1].split("<", 1)[0].strip()
        token = link.exchange_code(app, code, request)
        return base, token, link.verify_token(base, token)

    def link(self, name: str, x_id: str, x_name: str, username: str) -> None:
        with Ledger.open(self.config.database) as ledger:
            base, token, account = self.authorise(ledger, username, x_name)
            outcome = store_link(ledger, self.config, name, XUser(x_id, x_name, x_name), base, token, account,
                                 datetime.now(timezone.utc))
        self.tokens[name] = token
        _say(f"  linked {name}: X @{x_name} -> @{outcome.org.acct} (cursor at the newest existing post {outcome.cursor})")

    def link_source(self, name: str, kind: str, account_id: str, username: str) -> None:
        """`bridge link NAME --feed URL` / `--bluesky HANDLE`: read the source's start, then authorise and store."""
        if kind == "feed":
            source = FeedSource(self.config.feed)
            try:
                cursor, meta = source.start_cursor(account_id)
            finally:
                source.close()
            handle, said = meta["title"], f"feed {meta['title']!r} ({account_id}); its {meta['entries']} entry(ies) now are not posted"
        else:
            with bluesky_source(self.config) as bsky:
                cursor, meta = bsky.start_cursor(account_id)
            handle, said = meta["handle"], f"Bluesky @{meta['handle']} ({account_id}); its posts so far are not posted"
        with Ledger.open(self.config.database) as ledger:
            base, token, account = self.authorise(ledger, username, handle)
            outcome = store_source_link(ledger, name, kind, account_id, handle, base, token, account,
                                        datetime.now(timezone.utc), cursor)
        self.tokens[name] = token
        _say(f"  linked {name}: {said} -> @{outcome.org.acct}")

    def use_bluesky(self, pds: LocalPds) -> None:
        """Point the configuration at the local PDS and its PLC directory."""
        self.config_path.write_text(self.config_path.read_text()
                                    + f"bluesky:\n  plc_url: {pds.plc_url}\n  appview_url: {pds.url}\n  timeout: 10\n")
        self.config = load_config(self.config_path)

    def cycle(self) -> None:
        with Ledger.open(self.config.database) as ledger, Pipeline(self.config, ledger) as pipeline:
            for org in ledger.list_orgs():
                r = pipeline.cycle(org.name)
                _say(f"  {org.name}: fetched {r.fetched}, delivered {r.delivered}, skipped {r.skipped}, failed {r.failed}"
                     f"  (source requests {r.x_requests}, Mastodon requests {r.mastodon_requests})"
                     + (f"  error: {r.error}" if r.error else ""))

    def show_toots(self, name: str) -> None:
        token = self.tokens[name]
        headers = {"Authorization": f"Bearer {token}"}
        me = self.http.get(f"{self.mastodon}/api/v1/accounts/verify_credentials", headers=headers).json()
        statuses = self.http.get(f"{self.mastodon}/api/v1/accounts/{me['id']}/statuses", headers=headers, params={"limit": 40}).json()
        _say(f"\n--- toots of @{me['acct']} on the local Mastodon ({len(statuses)}) ---")
        for s in reversed(statuses):
            if s.get("reblog"):
                _say(f"* [boost] of @{s['reblog']['account']['acct']}: {html_to_text(s['reblog']['content'])[:80]}")
                continue
            reply = f" [reply to {s['in_reply_to_id']}]" if s.get("in_reply_to_id") else ""
            media = "".join(f"\n    [{m['type']}: {m.get('description') or 'no description'}]" for m in s["media_attachments"])
            text = html_to_text(s["content"]).replace("\n", "\n    ")
            _say(f"* {s['id']}{reply} ({s['visibility']})\n    {text}{media}")


def run_demo(keep: bool = False) -> int:
    started = time.monotonic()
    configure_logging("console", level=30)  # warnings only: the demo prints its own story
    state = Path(tempfile.mkdtemp(prefix="geno-bridge-demo-"))
    _say("geno-bridge demo: local stand-ins only, no credentials, nothing leaves this machine.\n")
    _say("Starting the local Mastodon (mastodon-mock) and the fake X API ...")
    try:
        proc, mastodon = start_mastodon_mock(state / "mastodon.log")
    except StandinError as exc:
        shutil.rmtree(state, ignore_errors=True)
        raise SystemExit(f"error: the demo cannot start: {exc}") from None
    x = FakeXServer().start()
    sites: list[FeedSite] = []
    stops: list[Any] = []
    bluesky_shown: list[str] = []
    try:
        demo = Demo(state, x, mastodon)
        a_id, a_name = "7001", "WohnenEG"
        b_id, b_name = "7002", "SolarGeno"
        x.add_user(a_id, a_name, "Wohnen eG")
        x.add_user(b_id, b_name, "SolarGeno eG")
        for n in range(3):
            x.add_tweet(demo.post(a_id, a_name, f"An old post from 2024, number {n + 1}. It stays on X.", n))
        x.add_tweet(demo.post(b_id, b_name, "Old SolarGeno news that should not flood anyone's timeline.", 4))

        _say("\n1. Linking two cooperatives (OAuth on the instance; nobody handles a password)")
        demo.link("wohnen-eg", a_id, a_name, "wohnen")
        demo.link("solargeno", b_id, b_name, "solargeno")

        _say("\n2. An idle cycle: nothing old is posted (1 X request per organisation, 0 Mastodon requests)")
        demo.cycle()

        _say("\n3. New posts appear on X ...")
        x.put_media("house.jpg", JPEG, "image/jpeg")
        photo = make_media("3_1", "photo", base_url=x.base_url, name="house.jpg",
                           alt_text="The new timber-frame house of Wohnen eG at dusk")
        solar = demo.post(b_id, b_name, "Our 100th rooftop is online! Thanks to all members #Energiewende", 30,
                          hashtags=["Energiewende"])
        x.add_tweet(solar)
        x.add_tweet(demo.post(
            a_id, a_name,
            "Open day on Saturday & everyone is welcome! Details: https://wohnen-eg.example/open-day "
            "#Genossenschaft with @SolarGeno and @someone_unlinked",
            31, urls=["https://wohnen-eg.example/open-day"], hashtags=["Genossenschaft"],
            mentions=[("SolarGeno", b_id), "someone_unlinked"],
        ))
        x.add_tweet(demo.post(a_id, a_name, "Our new house, finished today.", 32, media_keys=["3_1"]), media=[photo])
        long_text = " ".join(
            f"Paragraph {i}: the general assembly decided on rents, the solar roof, the shared workshop and"
            f" the garden, and every member had a vote, as cooperatives do." for i in range(1, 9)
        )
        x.add_tweet(demo.post(a_id, a_name, long_text[:270] + "…", 33, note_tweet=long_text))
        _say("\n4. Poll cycle")
        demo.cycle()

        _say("\n5. More posts: a self-thread reply, and a retweet of SolarGeno's bridged post")
        with Ledger.open(demo.config.database) as ledger:
            parent = ledger.posts("wohnen-eg", ["delivered"])[0].post_id
        x.add_tweet(demo.post(a_id, a_name, f"@{a_name} Update: the open day starts at 10:00.", 40,
                              in_reply_to=parent, replied_user_id=a_id, mentions=[(a_name, a_id)]))
        x.add_tweet(demo.post(a_id, a_name, f"RT @{b_name}: Our 100th rooftop is online!", 41,
                              retweeted=solar["id"], mentions=[(b_name, b_id)]), referenced=[solar])
        demo.cycle()

        _say("\n6. An idle cycle again")
        demo.cycle()

        _say("\n7. A cooperative without X: its website's feed (RSS on a local web server)")
        site = FeedSite("Bäckerei Vollkorn eG")
        sites.append(site)
        site.add("https://baeckerei.example/2025/sommerfest", "Summer party", "<p>Last year's party.</p>", T0)
        demo.link_source("baeckerei", "feed", site.url, "baeckerei")
        demo.cycle()
        _say("  ... the bakery publishes an article on its website")
        site.add("https://baeckerei.example/2026/brot-abo", "Bread subscription for members",
                 "<p>From January, members can <a href=\"https://baeckerei.example/abo\">subscribe</a> to a weekly"
                 " loaf. The first month is free.</p>", T0 + timedelta(minutes=50))
        demo.cycle()

        _say("\n8. A cooperative on Bluesky (the reference Bluesky PDS, local)")
        if not pds_installed():
            _say(f"  skipped: the local Bluesky PDS is not installed in {PDS_DIR}; install it once with"
                 " `python3 dev.py pds` (a few minutes) and run the demo again")
        else:
            pds = LocalPds(state)
            stops.append(pds.stop)
            demo.use_bluesky(pds)
            did, jwt = pds.create_account("windgeno.test")
            pds.post(did, jwt, {"text": "An old Bluesky post: it stays on Bluesky."})
            demo.link_source("windgeno", "bluesky", did, "windgeno")
            text = "Vote on the new wind park on Friday! #Energiewende"
            tag = text.encode().index(b"#Energiewende")
            pds.post(did, jwt, {"text": text, "langs": ["en"], "facets": [{
                "index": {"byteStart": tag, "byteEnd": tag + len(b"#Energiewende")},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Energiewende"}]}]})
            demo.cycle()
            bluesky_shown.append("windgeno")

        demo.show_toots("wohnen-eg")
        demo.show_toots("solargeno")
        demo.show_toots("baeckerei")
        for name in bluesky_shown:
            demo.show_toots(name)

        _say("\n--- bridge orgs ---")
        with Ledger.open(demo.config.database) as ledger:
            rows = org_rows(ledger)
        width = {c: max(len(str(r[c])) for r in rows) for c in ("name", "x", "fediverse", "state")} if rows else {}
        for r in rows:  # columns as wide as their longest entry: a feed's URL is longer than an X handle
            _say("  " + "  ".join(f"{r[c]!s:<{w}}" for c, w in width.items()) + f"  pending {r['pending']} failed {r['failed']}")
        _say(f"\nX API requests served: {x.count('/2/')}; posts read from X: {x.posts_served} (each exactly once)")
        _say(f"Feed requests served: {site.requests} (an unchanged feed is answered 304, with no body)")
        _say(f"Done in {time.monotonic() - started:.1f} s.")
        if keep:
            _say(f"State kept in {state} (config: {state / 'config.yaml'})")
        return 0
    finally:
        x.stop()
        for site in sites:
            site.stop()
        for stop in stops:
            stop()
        stop_process(proc)
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
