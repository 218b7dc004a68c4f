"""An end-to-end test bench: a config file, a ledger, the fake X server and mastodon-mock, wired together."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bridge.config import Config, load_config
from bridge.ledger import Ledger, OrgRecord, TargetAccount
from bridge.pipeline import Pipeline
from bridge.targets.mastodon import MastodonTarget, limits_to_dict
from geno_bridge_standins.x_api import FakeXServer, make_media, make_tweet
from tests.mastodon_server import MastodonServer

_ids = itertools.count(1)
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


@dataclass
class LinkedOrg:
    name: str
    x_user_id: str
    x_username: str
    token: str
    account_id: str
    acct: str


@dataclass
class BridgeEnv:
    tmp: Path
    x: FakeXServer
    mastodon: MastodonServer
    extra_config: str = ""
    orgs: dict[str, LinkedOrg] = field(default_factory=dict)
    _post_ids: Any = field(default_factory=lambda: itertools.count(1_000_000_000_000_000_000))

    def __post_init__(self) -> None:
        self.config_path = self.tmp / "config.yaml"
        self.write_config(self.extra_config)

    def write_config(self, extra: str = "") -> None:
        self.config_path.write_text(
            f"database: {self.tmp / 'state' / 'ledger.db'}\n"
            f"x:\n  bearer_token: {self.x.token}\n  api_base_url: {self.x.base_url}\n"
            f"  media_hosts: ['127.0.0.1']\n  timeout: 5\n"
            f"mastodon:\n  default_instance: {self.mastodon.base_url}\n  timeout: 5\n  media_poll_timeout: 10\n"
            + extra
        )

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    def ledger(self) -> Ledger:
        return Ledger.open(self.config.database)

    def pipeline(self, ledger: Ledger, **kwargs: Any) -> Pipeline:
        kwargs.setdefault("retry_wait_max", 0.01)
        return Pipeline(self.config, ledger, **kwargs)

    def link(self, name: str, x_username: str | None = None, *, cursor: str | None = "1",
             x_user_id: str | None = None) -> LinkedOrg:
        """Link an organisation the way `bridge link --access-token` does, without the CLI.

        ``x_user_id`` fixes the X account id (e.g. an archive's account); by default a fresh one.
        """
        n = next(_ids)
        x_username = x_username or f"{name.replace('-', '_')}_x"
        x_user_id = x_user_id or str(5000 + n)
        username = f"{name.replace('-', '_')}{n}"
        self.x.add_user(x_user_id, x_username)
        token = self.mastodon.create_account(username)
        target = MastodonTarget(self.mastodon.base_url, token)
        me = target.verify()
        limits = target.instance_limits()
        target.close()
        now = datetime.now(timezone.utc)
        with self.ledger() as ledger:
            ledger.save_org(
                OrgRecord(name, x_user_id, x_username, self.mastodon.base_url, me.id, me.acct, me.url, token=token,
                          limits=limits_to_dict(limits), limits_fetched_at=now),
                now,
            )
            if cursor is not None:
                ledger.set_cursor(name, cursor, now)
        org = LinkedOrg(name, x_user_id, x_username, token, me.id, me.acct)
        self.orgs[name] = org
        return org

    def add_target(self, org: LinkedOrg, server: MastodonServer, name: str = "second") -> LinkedOrg:
        """Give ``org`` a second target: a fresh account on ``server`` (another mastodon-mock), as
        linking one would. Returns that account (its token and id) for reading what arrived."""
        username = f"{org.name.replace('-', '_')}{next(_ids)}"
        token = server.create_account(username)
        target = MastodonTarget(server.base_url, token)
        me = target.verify()
        limits = target.instance_limits()
        target.close()
        now = datetime.now(timezone.utc)
        with self.ledger() as ledger:
            ledger.add_target(TargetAccount(org.name, name, "mastodon", server.base_url, me.id, me.acct, me.url, token,
                                            limits=limits_to_dict(limits), limits_fetched_at=now), now)
        return LinkedOrg(org.name, org.x_user_id, org.x_username, token, me.id, me.acct)

    def next_id(self) -> str:
        return str(next(self._post_ids))

    def tweet(self, org: LinkedOrg, text: str, *, post_id: str | None = None, minutes: int = 0, **kwargs: Any) -> dict[str, Any]:
        post_id = post_id or self.next_id()
        tweet = make_tweet(post_id, org.x_user_id, text, created_at=T0 + timedelta(minutes=minutes or int(post_id) % 10_000),
                           author_username=org.x_username, **kwargs)
        return tweet

    def publish(self, tweet: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.x.add_tweet(tweet, **kwargs)
        return tweet

    def photo(self, key: str, alt: str | None = None, data: bytes = b"\xff\xd8\xff\xe0fakejpeg") -> dict[str, Any]:
        name = f"{key}.jpg"
        self.x.put_media(name, data, "image/jpeg")
        return make_media(key, "photo", base_url=self.x.base_url, name=name, alt_text=alt)

    def video(self, key: str, kind: str = "video", alt: str | None = None) -> dict[str, Any]:
        media = make_media(key, kind, base_url=self.x.base_url, name=f"{key}.mp4", alt_text=alt)
        for v in media.get("variants", []):
            if v.get("content_type") == "video/mp4":
                self.x.put_media(v["url"].rsplit("/", 1)[-1].split("?")[0], b"\x00\x00\x00\x18ftypmp42fakevideo", "video/mp4")
        self.x.put_media(f"{key}.jpg", b"\xff\xd8\xff\xe0preview", "image/jpeg")
        return media

    def toots(self, org: LinkedOrg) -> list[dict[str, Any]]:
        """What actually arrived on the server for this account, oldest first."""
        return list(reversed(self.mastodon.statuses(org.token, org.account_id)))

    def mastodon_requests(self) -> int:
        return int(httpx.get(f"{self.mastodon.base_url}/api/v1/_mock/faults").status_code == 200)
