"""Shared fixtures: real loopback servers, never the internet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bluesky_pds import BlueskyPds, PdsNotInstalled, start_pds
from tests.mastodon_server import MastodonServer, start_mastodon

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = (ROOT.parent / "shared" / "fixtures") if (ROOT.parent / "shared" / "fixtures").is_dir() else ROOT / "tests" / "data" / "shared-fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The project's reference data (../shared/fixtures, see its README)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def mastodon_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MastodonServer]:
    """One mastodon-mock process for the whole session (fast); tests make their own accounts."""
    server = start_mastodon(log_path=tmp_path_factory.mktemp("mastodon") / "server.log")
    yield server
    # A request a test left hanging keeps the mock from exiting and costs the session the whole grace.
    assert server.stop(), "mastodon-mock was still serving a request 10 s after SIGTERM: a test left one hanging"


@pytest.fixture
def mastodon(mastodon_session: MastodonServer) -> Iterator[MastodonServer]:
    """The session server with no fault rules left over from another test."""
    mastodon_session.clear_faults()
    yield mastodon_session
    mastodon_session.clear_faults()


@pytest.fixture(scope="session")
def mastodon_other_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MastodonServer]:
    """A second mastodon-mock (another instance), for organisations with two Mastodon targets."""
    server = start_mastodon(log_path=tmp_path_factory.mktemp("mastodon-other") / "server.log")
    yield server
    assert server.stop(), "the second mastodon-mock was still serving a request 10 s after SIGTERM"


@pytest.fixture
def mastodon_other(mastodon_other_session: MastodonServer) -> Iterator[MastodonServer]:
    mastodon_other_session.clear_faults()
    yield mastodon_other_session
    mastodon_other_session.clear_faults()


@pytest.fixture(scope="session")
def bluesky_pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlueskyPds]:
    """One reference Bluesky PDS and PLC directory for the session; tests make their own accounts.

    `python3 dev.py test` installs it where npm is available. Without it the tests are skipped on a
    newcomer's machine (the README promises the tests with Python alone) but fail under CI (CI=true),
    where a skipped Bluesky test would look like a passing one. Tests that use it are marked `bluesky`.
    """
    try:
        server = start_pds(tmp_path_factory.mktemp("bluesky-pds"))
    except PdsNotInstalled as err:
        if os.environ.get("CI"):
            pytest.fail(str(err), pytrace=False)
        pytest.skip(str(err))
    yield server
    assert server.stop(), f"the PDS launcher did not exit cleanly 10 s after SIGTERM; its log ends:\n{server.log_tail()}"


pytest_plugins = ["tests.fixtures_x", "tests.feed_server", "tests.web_browser"]
