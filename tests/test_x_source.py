"""The real X client (bridge.sources.x_api) against the fake X API over real HTTP."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.errors import AuthError, PermanentError, RateLimited, SourceError, TransientError
from bridge.sources.x_api import EXPANSIONS, TWEET_FIELDS, FetchResult, XApiSource, XUser
from tests.fakes.x_api import DEFAULT_TOKEN, FakeXServer, make_media, make_tweet
from tests.fixtures_x import x_server  # noqa: F401

COOP = "1000"
BASE_ID = 1_700_000_000_000_000_000
START = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def post_id(n: int) -> str:
    return str(BASE_ID + n)


def publish(server: FakeXServer, count: int, *, first: int = 1) -> list[str]:
    """``count`` plain posts by @coop, one minute apart; returns their ids oldest first."""
    ids = []
    for n in range(first, first + count):
        server.add_tweet(make_tweet(post_id(n), COOP, f"post number {n}", created_at=START + timedelta(minutes=n)))
        ids.append(post_id(n))
    return ids


def source(server: FakeXServer, **kwargs: object) -> XApiSource:
    kwargs.setdefault("media_hosts", (server.media_host,))
    return XApiSource(kwargs.pop("token", DEFAULT_TOKEN), api_base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def ids_of(result: FetchResult) -> list[str]:
    return [post["id"] for page in result.pages for post in page.get("data", [])]


# ------------------------------------------------------------------ polling


def test_pages_since_cursor_reads_every_new_post_once(x_server: FakeXServer) -> None:
    ids = publish(x_server, 250)
    since = ids[19]  # 230 newer posts: pages of 100, 100, 30
    with source(x_server) as x:
        result = x.fetch_since(COOP, since)
    got = ids_of(result)
    assert sorted(got) == ids[20:]
    assert len(set(got)) == len(got) == 230
    assert got == sorted(got, reverse=True)  # newest first, as X returns
    assert result.request_count == 3 == x_server.count("/2/users/")
    assert [len(p["data"]) for p in result.pages] == [100, 100, 30]
    assert result.newest_id == ids[-1] and result.oldest_id == ids[20]
    assert result.complete
    assert x_server.posts_served == 230
    queries = [r.query for r in x_server.requests]
    assert all(q["since_id"] == since and q["max_results"] == "100" for q in queries)
    assert "pagination_token" not in queries[0] and all("pagination_token" in q for q in queries[1:])


def test_idle_poll_costs_exactly_one_request(x_server: FakeXServer) -> None:
    ids = publish(x_server, 30)
    with source(x_server) as x:
        result = x.fetch_since(COOP, ids[-1])
    assert x_server.count() == 1 and result.request_count == 1
    assert result.pages == [{"meta": {"result_count": 0}}]
    assert result.newest_id is None and result.post_count == 0 and result.complete


def test_polls_reuse_one_connection(x_server: FakeXServer) -> None:
    """A kept-alive connection: the second poll costs no new TCP handshake (issue 8)."""
    ids = publish(x_server, 3)
    with source(x_server) as x:
        for _ in range(3):
            x.fetch_since(COOP, ids[-1])
    assert x_server.count() == 3
    assert len({r.client_port for r in x_server.requests}) == 1


class _RecordingProxy(BaseHTTPRequestHandler):
    """An HTTP proxy that only writes down the request line and refuses."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.seen.append(self.requestline)
        self.send_response(502)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy variables are read once, when the client is made, and still honoured."""
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    _RecordingProxy.seen = []
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with XApiSource(DEFAULT_TOKEN, api_base_url="http://x-api.invalid") as x, \
                pytest.raises(TransientError, match="HTTP 502"):
            x.fetch_since(COOP, None)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert _RecordingProxy.seen and _RecordingProxy.seen[0].startswith("GET http://x-api.invalid/2/users/1000/tweets?")


def test_a_netrc_entry_never_replaces_the_bearer_token(
    x_server: FakeXServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    ids = publish(x_server, 2)
    with source(x_server) as x:
        result = x.fetch_since(COOP, ids[0])
    assert ids_of(result) == [ids[1]]


def test_first_poll_reads_one_page_only(x_server: FakeXServer) -> None:
    ids = publish(x_server, 250)
    with source(x_server) as x:
        result = x.fetch_since(COOP, None)
    assert x_server.count() == 1 and result.request_count == 1
    assert len(result.pages) == 1 and result.post_count == 100
    assert result.newest_id == ids[-1]


def test_max_pages_reports_incomplete_and_the_gap_can_be_filled(x_server: FakeXServer) -> None:
    ids = publish(x_server, 250)
    with source(x_server) as x:
        result = x.fetch_since(COOP, ids[9], max_pages=2)
        assert result.request_count == 2 and not result.complete
        assert result.newest_id == ids[-1] and result.oldest_id == ids[50]
        gap = [p["id"] for page in x.fetch_range(COOP, since_id=ids[9], until_id=result.oldest_id)
               for p in page.get("data", [])]
    assert sorted(gap) == ids[10:50]


def test_requests_the_fields_and_expansions_the_converter_needs(x_server: FakeXServer) -> None:
    x_server.add_user("2000", "friend", "A Friend")
    photo = make_media("3_1", "photo", base_url=x_server.base_url, alt_text="the new roof")
    original = make_tweet(post_id(1), "2000", "solar panels are up", created_at=START, media_keys=["3_1"])
    retweet = make_tweet(post_id(2), COOP, "RT @friend: solar panels are up", created_at=START + timedelta(hours=1),
                         mentions=[("friend", "2000")], retweeted=post_id(1))
    x_server.add_tweet(retweet, media=[photo], referenced=[original])
    with source(x_server) as x:
        result = x.fetch_since(COOP, None)
    query = x_server.requests[0].query
    assert query["tweet.fields"].split(",") == TWEET_FIELDS
    assert query["expansions"].split(",") == EXPANSIONS
    page = result.pages[0]
    assert page["data"][0]["referenced_tweets"] == [{"type": "retweeted", "id": post_id(1)}]
    assert page["includes"]["tweets"][0]["text"].startswith("solar panels are up https://t.co/")
    assert page["includes"]["media"][0]["alt_text"] == "the new roof"
    assert {u["username"] for u in page["includes"]["users"]} == {"coop", "friend"}


def test_fetch_range_stops_at_limit_and_honours_time_window(x_server: FakeXServer) -> None:
    ids = publish(x_server, 60)
    with source(x_server) as x:
        pages = list(x.fetch_range(COOP, limit=20))
        assert sum(len(p["data"]) for p in pages) == 20 and len(pages) == 1
        window = [p["id"] for page in x.fetch_range(COOP, start_time=START + timedelta(minutes=10),
                                                    end_time=START + timedelta(minutes=19))
                  for p in page["data"]]
    assert sorted(window) == ids[9:19]
    assert x_server.requests[-1].query["start_time"] == "2025-03-01T12:10:00Z"


def test_fetch_range_reaches_only_the_3200_most_recent(x_server: FakeXServer) -> None:
    ids = publish(x_server, 3250)
    with source(x_server) as x:
        got = [p["id"] for page in x.fetch_range(COOP) for p in page["data"]]
    assert len(got) == 3200 and got[0] == ids[-1] and got[-1] == ids[50]
    assert x_server.count() == 32


def test_newest_post_id_is_one_small_request(x_server: FakeXServer) -> None:
    with source(x_server) as x:
        assert x.newest_post_id(COOP) is None
        ids = publish(x_server, 12)
        x_server.reset_counts()
        assert x.newest_post_id(COOP) == ids[-1]
    assert x_server.count() == 1 and x_server.requests[0].query["max_results"] == "5"


def test_rate_limit_info_comes_from_the_last_answer(x_server: FakeXServer) -> None:
    publish(x_server, 3)
    with source(x_server) as x:
        result = x.fetch_since(COOP, None)
    assert result.rate_limit_remaining == x_server.rate_limit - 1
    assert result.rate_limit_reset is not None and result.rate_limit_reset > datetime.now(timezone.utc)


# ------------------------------------------------------------------ errors


def test_429_is_rate_limited_until_the_reset(x_server: FakeXServer) -> None:
    publish(x_server, 3)
    reset = int(time.time()) + 600
    x_server.inject("/2/users/", "429", reset_at=reset)
    with source(x_server) as x:
        with pytest.raises(RateLimited) as caught:
            x.fetch_since(COOP, post_id(1))
        assert caught.value.retry_at == datetime.fromtimestamp(reset, tz=timezone.utc)
        assert "/2/users/1000/tweets" in str(caught.value)
        assert x.fetch_since(COOP, post_id(1)).post_count == 2  # the fault fired once


@pytest.mark.parametrize("kind", ["503", "500", "malformed"])
def test_server_errors_and_cut_off_json_are_transient(x_server: FakeXServer, kind: str) -> None:
    publish(x_server, 3)
    x_server.inject("/2/users/", kind)
    with source(x_server) as x, pytest.raises(TransientError) as caught:
        x.fetch_since(COOP, post_id(1))
    assert not isinstance(caught.value, RateLimited)
    assert "/2/users/1000/tweets" in str(caught.value)


def test_failure_on_a_later_page_propagates(x_server: FakeXServer) -> None:
    ids = publish(x_server, 150)
    x_server.inject("/2/users/", "slow", delay=0)  # first request passes untouched
    x_server.inject("/2/users/", "503")
    with source(x_server) as x, pytest.raises(TransientError):
        x.fetch_since(COOP, ids[0])
    assert x_server.count() == 2


def test_refused_token_is_auth_error_without_the_token(x_server: FakeXServer) -> None:
    secret = "AAAAAAAAAAAAAAAAAAAAAsecret-bearer-value"
    with source(x_server, token=secret) as x, pytest.raises(AuthError) as caught:
        x.fetch_since(COOP, None)
    message = str(caught.value)
    assert secret not in message and "bearer token was refused" in message and "401" in message
    assert "/2/users/1000/tweets" in message


def test_unknown_user_id_on_the_timeline_is_source_error(x_server: FakeXServer) -> None:
    with source(x_server) as x, pytest.raises(SourceError) as caught:
        x.fetch_since("99999", None)
    assert "99999" in str(caught.value) and "Could not find user" in str(caught.value)


def test_suspended_account_timeline_is_source_error(x_server: FakeXServer) -> None:
    x_server.set_user(COOP, suspended=True)
    with source(x_server) as x, pytest.raises(SourceError, match="suspended"):
        x.fetch_since(COOP, None)


def test_bad_request_is_source_error_with_x_detail(x_server: FakeXServer) -> None:
    with source(x_server) as x, pytest.raises(SourceError) as caught:
        x.fetch_since(COOP, "not-a-number")
    assert "HTTP 400" in str(caught.value) and "since_id" in str(caught.value)


def test_timeout_is_honoured(x_server: FakeXServer) -> None:
    x_server.inject("/2/users/", "slow", delay=30)
    began = time.monotonic()
    with source(x_server, timeout=0.3) as x, pytest.raises(TransientError, match="no answer within 0.3 s"):
        x.fetch_since(COOP, None)
    assert time.monotonic() - began < 5


def test_server_gone_is_transient(x_server: FakeXServer) -> None:
    with source(x_server, timeout=2) as x:
        x.fetch_since(COOP, None)  # leaves a kept-alive connection in the pool
        x_server.stop()
        with pytest.raises(TransientError, match="connection failed"):
            x.fetch_since(COOP, None)
        with pytest.raises(TransientError, match="connection failed"):
            x.fetch_since(COOP, None)


# ------------------------------------------------------------------ lookup


def test_lookup_user_finds_the_id(x_server: FakeXServer) -> None:
    with source(x_server) as x:
        assert x.lookup_user("@Coop") == XUser(id=COOP, username="coop", name="Housing Coop")
    assert x_server.requests[0].path == "/2/users/by/username/Coop"


def test_lookup_unknown_user_names_the_handle(x_server: FakeXServer) -> None:
    with source(x_server) as x, pytest.raises(PermanentError) as caught:
        x.lookup_user("nobody_here")
    assert "@nobody_here" in str(caught.value) and "Could not find user" in str(caught.value)


def test_lookup_suspended_user(x_server: FakeXServer) -> None:
    x_server.add_user("3000", "gone_coop", suspended=True)
    with source(x_server) as x, pytest.raises(PermanentError, match=r"@gone_coop.*suspended"):
        x.lookup_user("gone_coop")


def test_lookup_rejects_an_invalid_handle_without_asking(x_server: FakeXServer) -> None:
    with source(x_server) as x, pytest.raises(PermanentError, match="not valid"):
        x.lookup_user("no spaces/allowed")
    assert x_server.count() == 0


# ------------------------------------------------------------------ media


def test_download_media_from_allowed_host(x_server: FakeXServer) -> None:
    data = bytes(range(256)) * 400
    url = x_server.put_media("roof.jpg", data, "image/jpeg")
    dest = io.BytesIO()
    with source(x_server) as x:
        assert x.download_media(url, dest, max_bytes=len(data)) == "image/jpeg"
    assert dest.getvalue() == data


def test_download_media_denies_other_hosts_without_a_request(x_server: FakeXServer) -> None:
    url = x_server.put_media("roof.jpg", b"x" * 10)
    with source(x_server, media_hosts=("pbs.twimg.com",)) as x, pytest.raises(PermanentError) as caught:
        x.download_media(url, io.BytesIO(), max_bytes=100)
    assert x_server.media_host in str(caught.value)
    assert x_server.count() == 0


def test_download_media_size_cap(x_server: FakeXServer) -> None:
    url = x_server.put_media("big.mp4", b"v" * 50_000, "video/mp4")
    dest = io.BytesIO()
    with source(x_server) as x, pytest.raises(PermanentError, match="49999-byte limit"):
        x.download_media(url, dest, max_bytes=49_999)
    assert len(dest.getvalue()) <= 49_999


def test_download_media_missing_is_permanent_and_5xx_transient(x_server: FakeXServer) -> None:
    url = x_server.put_media("ok.jpg", b"jpeg")
    with source(x_server) as x:
        with pytest.raises(PermanentError, match="404"):
            x.download_media(x_server.media_url("gone.jpg"), io.BytesIO(), max_bytes=100)
        x_server.inject("/media/", "503")
        with pytest.raises(TransientError, match="503"):
            x.download_media(url, io.BytesIO(), max_bytes=100)
    x_server.inject("/media/", "slow", delay=30)
    with source(x_server, timeout=0.3) as x, pytest.raises(TransientError, match="no answer"):
        x.download_media(url, io.BytesIO(), max_bytes=100)


# ------------------------------------------------------------------ hostile pages (issue 12, item 3)


def test_a_page_nested_too_deeply_to_parse_is_transient(x_server: FakeXServer) -> None:
    x_server.inject("/2/users/", "body", body='{"data": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    with source(x_server) as x, pytest.raises(TransientError, match="nested too deeply") as caught:
        x.fetch_since(COOP, post_id(1))
    assert "/2/users/1000/tweets" in str(caught.value)


def test_the_cursor_moves_past_the_page_but_only_to_ids_x_can_take_back(x_server: FakeXServer) -> None:
    page = {"data": [{"id": "²", "text": "strange"}, {"id": "9" * 40, "text": "huge"},
                     {"id": post_id(7), "text": "sane"}, {"id": post_id(3), "text": "older"}],
            "meta": {"result_count": 4, "newest_id": "²", "oldest_id": post_id(3)}}
    x_server.inject("/2/users/", "body", body=json.dumps(page))
    with source(x_server) as x:
        result = x.fetch_since(COOP, post_id(1))
    assert result.newest_id == post_id(7) and result.oldest_id == post_id(3)
