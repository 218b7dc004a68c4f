"""The fake X API v2 server for tests (it lives in the package for ``bridge demo``)."""

from __future__ import annotations

from bridge.standins.x_api import (
    DEFAULT_TOKEN,
    Fault,
    FakeXServer,
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
