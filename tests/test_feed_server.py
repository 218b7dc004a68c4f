"""The loopback website the feed tests read: it must behave as real servers do, or the tests prove nothing."""

from __future__ import annotations

import gzip

import httpx

from tests.feed_server import FeedServer


def test_the_server_answers_a_repeated_request_with_its_etag_by_304_and_no_body(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("wordpress.xml")
    first = httpx.get(url)
    assert first.status_code == 200 and first.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert [h.body_bytes for h in feed_server.requests_to("/feeds/wordpress.xml")] == [len(first.content), 0]


def test_the_server_honours_if_modified_since_when_it_sends_no_etag(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml", etag=False)
    first = httpx.get(url)
    assert "etag" not in first.headers
    assert httpx.get(url, headers={"If-Modified-Since": first.headers["last-modified"]}).status_code == 304
    assert httpx.get(url, headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).status_code == 200


def test_the_server_injects_each_fault(feed_server: FeedServer) -> None:
    for kind in ("404", "410"):
        feed_server.fault(f"/{kind}", kind)
        assert httpx.get(feed_server.url(f"/{kind}")).status_code == int(kind)
    feed_server.fault("/old", "moved", to="/new")
    moved = httpx.get(feed_server.url("/old"))
    assert moved.status_code == 301 and moved.headers["location"] == "/new"
    feed_server.fault("/bomb", "gzip_bomb", size=1_000_000)
    with httpx.stream("GET", feed_server.url("/bomb")) as raw:
        assert raw.headers["content-encoding"] == "gzip"
        assert len(gzip.decompress(b"".join(raw.iter_raw()))) == 1_000_000
    feed_server.fault("/latin", "wrong_charset")
    assert "charset=utf-8" in httpx.get(feed_server.url("/latin")).headers["content-type"]
    feed_server.fault("/big", "oversize", size=100_000)
    assert len(httpx.get(feed_server.url("/big")).content) > 100_000
