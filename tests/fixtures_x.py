"""pytest fixtures for the fake X server (enable with ``pytest_plugins = ["tests.fixtures_x"]``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.x_api import FakeXServer, started_x_server


@pytest.fixture
def x_server() -> Iterator[FakeXServer]:
    """A fresh fake X API per test, with @coop (id "1000"); stopped afterwards."""
    server = started_x_server()
    try:
        yield server
    finally:
        server.stop()
