"""The fake X API v2 server for tests (it lives in geno-bridge-standins, ``standins/``, shared with ``bridge demo``)."""

from __future__ import annotations

from geno_bridge_standins.x_api import (
    DEFAULT_TOKEN,
    FakeXServer,
    Fault,
    RecordedRequest,
    make_media,
    make_poll,
    make_tweet,
    x_time,
)

__all__ = [
    "DEFAULT_TOKEN",
    "Fault",
    "FakeXServer",
    "RecordedRequest",
    "make_media",
    "make_poll",
    "make_tweet",
    "x_time",
    "started_x_server",
]


def started_x_server(token: str = DEFAULT_TOKEN) -> FakeXServer:
    """A started server with one organisation account (id "1000", @coop); caller stops it."""
    server = FakeXServer(token).start()
    server.add_user("1000", "coop", "Housing Coop")
    return server
