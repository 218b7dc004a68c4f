"""A media server that trickles bytes never keeps a download, or the delivery thread, busy for good (issue 12, item 5).

The server is real HTTP on loopback: it sends the headers at once, then one byte
every 0.1 s, a bounded number of times, and stops when the client hangs up or
the test ends. The test configuration makes the overall deadline 1 s.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.errors import TransientError
from bridge.sources.x_api import MediaTooSlow, XApiSource
from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer, make_media
from tests.mastodon_server import MastodonServer

JPEG = b"\xff\xd8\xff\xe0trickle-test-jpeg"
TRICKLE_BYTES = 100  # bounded: at most 10 s, far longer than the 1 s deadline
TRICKLE_EVERY = 0.1


class _Trickle(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stopping = threading.Event()
        self.slow_requests = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Trickle

    def do_GET(self) -> None:
        slow = "slow" in self.path or "name=orig" in self.path
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(TRICKLE_BYTES if slow else len(JPEG)))
        self.end_headers()
        if not slow:
            self.wfile.write(JPEG)
            return
        self.server.slow_requests += 1
        for _ in range(TRICKLE_BYTES):
            try:
                self.wfile.write(b"\x00")
                self.wfile.flush()
            except OSError:
                return  # the client gave up: stop
            if self.server.stopping.wait(TRICKLE_EVERY):  # the trickle's pace, not a synchronisation
                return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[_Trickle]:
    server = _Trickle()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_trickling_media_download_ends_at_its_overall_deadline(trickle: _Trickle) -> None:
    with XApiSource("token", api_base_url=trickle.base_url, timeout=5, media_hosts=("127.0.0.1",),
                    media_deadline=1) as x:
        started = time.monotonic()
        with pytest.raises(MediaTooSlow) as exc:
            x.download_media(f"{trickle.base_url}/slow.jpg", io.BytesIO(), 10**6)
        took = time.monotonic() - started
    assert isinstance(exc.value, TransientError)  # nothing is lost: the post is tried again later
    assert "not downloaded within 1 s" in str(exc.value) and "media_download_deadline" in str(exc.value)
    assert 1 <= took < 2.5, took  # each read (every 0.1 s) is well inside the 5 s read timeout


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    env = BridgeEnv(tmp_path, x_server, mastodon)
    text = env.config_path.read_text()
    env.config_path.write_text(text.replace("  timeout: 5\n", "  timeout: 5\n  media_download_deadline: 1\n", 1))
    assert env.config.x.media_download_deadline == 1
    yield env


def test_a_photo_whose_server_trickles_falls_back_to_a_smaller_size_in_time(env: BridgeEnv, trickle: _Trickle) -> None:
    """The "orig" size trickles, "large" comes at once: the delivery thread is free after the deadline."""
    org = env.link("coop-trickle")
    photo = make_media("3_77", "photo", base_url=trickle.base_url, name="p.jpg", alt_text="house")
    env.publish(env.tweet(org, "Photo from a slow server", media_keys=["3_77"]), media=[photo])
    started = time.monotonic()
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle("coop-trickle")
    took = time.monotonic() - started
    assert result.delivered == 1, result
    assert trickle.slow_requests == 1
    [toot] = env.toots(org)
    assert html_to_text(toot["content"]) == "Photo from a slow server"
    assert [m["description"] for m in toot["media_attachments"]] == ["house"]
    assert took < 5, took


def test_a_photo_too_slow_in_every_size_defers_its_post_after_one_try_of_each(env: BridgeEnv, trickle: _Trickle) -> None:
    """Each size gets the deadline once per cycle (not three retries each); the post waits, it is not lost."""
    org = env.link("coop-all-slow")
    photo = make_media("3_78", "photo", base_url=trickle.base_url, name="slow.jpg")
    env.publish(env.tweet(org, "Every size trickles", media_keys=["3_78"]), media=[photo])
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle("coop-all-slow")
        [row] = ledger.open_posts("coop-all-slow")
    assert result.delivered == 0 and result.failed == 0 and result.deferred_until is not None
    assert trickle.slow_requests == 3  # orig, large, medium: one try each
    assert row.next_attempt_at is not None and "media_download_deadline" in (row.last_error or "")
    assert env.toots(org) == []
