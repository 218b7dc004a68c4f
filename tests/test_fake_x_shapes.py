"""The fake X API answers in the real shapes.

Held against the recorded real exchanges in shared/fixtures/x-api/v2 (default
fields only) and, for entities / includes / note_tweet / media / polls, the X
API v2 data dictionary (docs.x.com "Data Dictionary"; developer.x.com
"Example payloads", "Media object").
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.x_api import DEFAULT_TOKEN, FakeXServer, make_media, make_poll, make_tweet
from tests.fixtures_x import x_server  # noqa: F401

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
START = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
TCO = re.compile(r"^https://t\.co/[A-Za-z0-9]{10}$")
X_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def recorded(fixtures_dir: Path, name: str) -> dict[str, Any]:
    exchanges = json.loads((fixtures_dir / "x-api" / "v2" / name).read_text())
    return exchanges[0]


def shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def get(server: FakeXServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params, headers=AUTH, timeout=5)


def publish(server: FakeXServer, count: int) -> None:
    for n in range(1, count + 1):
        server.add_tweet(make_tweet(str(1_600_000_000_000_000_000 + n), "1000", f"post {n}", created_at=START))


# ------------------------------------------------------------------ against recorded responses


def test_users_tweets_matches_recording(x_server: FakeXServer, fixtures_dir: Path) -> None:
    real = recorded(fixtures_dir, "test_client_get_users_tweets.json")
    publish(x_server, 7)
    answer = get(x_server, "/2/users/1000/tweets", max_results=5)
    assert answer.status_code == real["status"]["code"] == 200
    body = answer.json()
    assert shape(body) == shape(real["body"])
    assert all(set(post) == set(real["body"]["data"][0]) for post in body["data"])
    assert set(body["meta"]) == set(real["body"]["meta"])
    assert re.fullmatch(r"[0-9a-z]+", body["meta"]["next_token"])


def test_rate_limit_headers_match_recording(x_server: FakeXServer, fixtures_dir: Path) -> None:
    real = recorded(fixtures_dir, "test_client_get_users_tweets.json")
    answer = get(x_server, "/2/users/1000/tweets")
    for name in (h for h in real["selected_headers"] if h.startswith("x-rate-limit")):
        assert answer.headers[name].isdigit(), name
    assert int(answer.headers["x-rate-limit-reset"]) > time.time()
    assert int(answer.headers["x-rate-limit-remaining"]) == int(answer.headers["x-rate-limit-limit"]) - 1
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert int(get(x_server, "/2/users/1000/tweets").headers["x-rate-limit-remaining"]) == \
        int(answer.headers["x-rate-limit-remaining"]) - 1


def test_user_by_username_matches_recording(x_server: FakeXServer, fixtures_dir: Path) -> None:
    real = recorded(fixtures_dir, "test_client_get_user.json")
    answer = get(x_server, "/2/users/by/username/coop")
    assert shape(answer.json()) == shape(real["body"])
    assert answer.json() == {"data": {"id": "1000", "name": "Housing Coop", "username": "coop"}}
    assert set(real["selected_headers"]) - {"date", "api-version"} <= set(answer.headers)


def test_empty_page_has_no_data_key(x_server: FakeXServer) -> None:
    assert get(x_server, "/2/users/1000/tweets").json() == {"meta": {"result_count": 0}}


# ------------------------------------------------------------------ error shapes


def test_missing_and_suspended_user_are_200_with_errors(x_server: FakeXServer) -> None:
    keys = {"value", "detail", "title", "resource_type", "parameter", "resource_id", "type"}
    missing = get(x_server, "/2/users/by/username/nobody")
    assert missing.status_code == 200
    [error] = missing.json()["errors"]
    assert set(error) == keys and "data" not in missing.json()
    assert error["title"] == "Not Found Error" and error["parameter"] == "username"
    assert error["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    x_server.add_user("3000", "gone", suspended=True)
    [suspended] = get(x_server, "/2/users/by/username/gone").json()["errors"]
    assert suspended["title"] == "Forbidden" and suspended["detail"] == "User has been suspended: [gone]."
    [by_id] = get(x_server, "/2/users/3000/tweets").json()["errors"]
    assert set(by_id) == keys and by_id["parameter"] == "id" and by_id["resource_id"] == "3000"
    x_server.add_user("4000", "locked", protected=True)
    [protected] = get(x_server, "/2/users/4000/tweets").json()["errors"]
    assert protected["type"].endswith("/not-authorized-for-resource")


@pytest.mark.parametrize("value", ["4", "101", "ten"])
def test_max_results_out_of_range_is_400(x_server: FakeXServer, value: str) -> None:
    answer = get(x_server, "/2/users/1000/tweets", max_results=value)
    assert answer.status_code == 400
    body = answer.json()
    assert body["title"] == "Invalid Request"
    assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert body["errors"] == [{
        "parameters": {"max_results": [value]},
        "message": f"The `max_results` query parameter value [{value}] is not between 5 and 100",
    }]


def test_missing_or_wrong_token_is_401_problem(x_server: FakeXServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.get(x_server.base_url + "/2/users/1000/tweets", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"title": "Unauthorized", "detail": "Unauthorized", "type": "about:blank", "status": 401}
    assert x_server.count() == 2 and [r.status for r in x_server.requests] == [401, 401]


def test_faults(x_server: FakeXServer) -> None:
    x_server.inject("/2/users/1000", "429", count=2, reset_at=1_900_000_000)
    for _ in range(2):
        answer = get(x_server, "/2/users/1000/tweets")
        assert answer.status_code == 429 and answer.json()["title"] == "Too Many Requests"
        assert answer.headers["x-rate-limit-remaining"] == "0"
        assert answer.headers["x-rate-limit-reset"] == "1900000000"
    assert get(x_server, "/2/users/1000/tweets").status_code == 200
    x_server.inject(None, "503")
    assert get(x_server, "/2/users/by/username/coop").status_code == 503
    publish(x_server, 2)
    x_server.inject("/2/users/1000/tweets", "malformed")
    cut = get(x_server, "/2/users/1000/tweets")
    assert cut.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    with pytest.raises(ValueError, match="kind"):
        x_server.inject(None, "teapot")


def test_slow_fault_is_interrupted_by_stop() -> None:
    server = FakeXServer().start()
    server.inject(None, "slow", delay=60)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(server.base_url + "/2/users/by/username/coop", headers=AUTH, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 5
    while server.faults_pending() and time.monotonic() < deadline:  # poll until the request is sleeping
        time.sleep(0.01)
    began = time.monotonic()
    server.stop()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - began < 5
    assert errors  # the connection was dropped, not answered


def test_latency_and_counters(x_server: FakeXServer) -> None:
    publish(x_server, 7)
    x_server.latency = 0.05
    began = time.monotonic()
    get(x_server, "/2/users/1000/tweets", max_results=5)
    assert time.monotonic() - began >= 0.05
    get(x_server, "/2/users/by/username/coop")
    assert x_server.count() == 2 and x_server.count("/2/users/by/") == 1
    assert x_server.posts_served == 5 and len(x_server.served_post_ids) == 5
    assert x_server.requests[0].query == {"max_results": "5"}
    x_server.reset_counts()
    assert x_server.count() == 0 and x_server.posts_served == 0


# ------------------------------------------------------------------ fields, expansions, caps


def test_only_requested_fields_and_expansions(x_server: FakeXServer) -> None:
    x_server.add_tweet(make_tweet("5000", "1000", "hi #coops", created_at=START, hashtags=["coops"]))
    plain = get(x_server, "/2/users/1000/tweets").json()
    assert set(plain["data"][0]) == {"id", "text", "edit_history_tweet_ids"} and "includes" not in plain
    rich = get(x_server, "/2/users/1000/tweets", **{"tweet.fields": "created_at,entities", "expansions": "author_id",
                                                     "user.fields": "protected"}).json()
    assert set(rich["data"][0]) == {"id", "text", "edit_history_tweet_ids", "created_at", "entities"}
    assert rich["includes"] == {"users": [{"id": "1000", "name": "Housing Coop", "username": "coop", "protected": False}]}
    assert get(x_server, "/2/users/1000/tweets", expansions="nonsense").status_code == 400


def test_exclude_and_caps(x_server: FakeXServer) -> None:
    for n in range(1, 3301):
        reply = {"in_reply_to": str(n - 1)} if n % 2 == 0 else {}
        x_server.add_tweet(make_tweet(str(10_000 + n), "1000", f"p{n}", created_at=START, **reply))

    def reachable(**params: Any) -> int:
        total, token = 0, None
        while True:
            extra = {"pagination_token": token} if token else {}
            meta = get(x_server, "/2/users/1000/tweets", max_results=100, **params, **extra).json()["meta"]
            total += meta["result_count"]
            token = meta.get("next_token")
            if not token:
                return total

    assert reachable() == 3200
    assert reachable(exclude="replies") == 800
    assert reachable(exclude="retweets") == 3200


# ------------------------------------------------------------------ builders (data dictionary shapes)


def test_make_tweet_shape() -> None:
    tweet = make_tweet(
        "1800000000000000001", "1000", "Rent & repairs <today>: https://coop.example/news/2025/roof-repairs-done @bob #coops $COOP",
        created_at=START, urls=["https://coop.example/news/2025/roof-repairs-done"], mentions=[("bob", "42")],
        hashtags=["coops"], cashtags=["COOP"], media_keys=["3_11", "7_12"], in_reply_to="1799", replied_user_id="42",
        quoted="1798", poll="55", lang="fr", possibly_sensitive=True, author_username="coop",
    )
    assert tweet["text"].startswith("Rent &amp; repairs &lt;today&gt;: https://t.co/")
    assert X_TIME.match(tweet["created_at"]) and tweet["created_at"] == "2025-03-01T12:00:00.000Z"
    assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
    assert tweet["referenced_tweets"] == [{"type": "replied_to", "id": "1799"}, {"type": "quoted", "id": "1798"}]
    assert tweet["in_reply_to_user_id"] == "42" and tweet["conversation_id"] == "1799"
    assert tweet["attachments"] == {"media_keys": ["3_11", "7_12"], "poll_ids": ["55"]}
    assert shape(tweet["edit_controls"]) == {"edits_remaining": "int", "is_edit_eligible": "bool", "editable_until": "str"}
    urls = tweet["entities"]["urls"]
    assert all(set(u) >= {"start", "end", "url", "expanded_url", "display_url"} for u in urls)
    assert all(TCO.match(u["url"]) for u in urls)
    link, photo, video = urls
    assert link["expanded_url"] == "https://coop.example/news/2025/roof-repairs-done" and "media_key" not in link
    assert photo["url"] == video["url"] and tweet["text"].endswith(" " + photo["url"])
    assert (photo["media_key"], video["media_key"]) == ("3_11", "7_12")
    assert photo["expanded_url"].endswith("/status/1800000000000000001/photo/1")
    assert video["expanded_url"].endswith("/video/1")
    [mention] = tweet["entities"]["mentions"]
    assert set(mention) == {"start", "end", "username", "id"} and mention["id"] == "42"
    # offsets are code points into the unescaped text (the model keeps them only as hints)
    assert html.unescape(tweet["text"])[mention["start"]:mention["end"]] == "@bob"
    assert shape(tweet["entities"]["hashtags"]) == [{"start": "int", "end": "int", "tag": "str"}]
    assert tweet["entities"]["cashtags"][0]["tag"] == "COOP"
    with pytest.raises(ValueError, match="@carol"):
        make_tweet("1", "1000", "hello", created_at=START, mentions=["carol"])


def test_make_tweet_long_post_and_edits() -> None:
    full = "A long announcement. " * 20 + "Details: https://coop.example/agm #agm"
    tweet = make_tweet("9", "1000", "", created_at=START, note_tweet=full, urls=["https://coop.example/agm"],
                       hashtags=["agm"], edit_history=["7", "9"])
    assert tweet["text"].endswith("…") and len(tweet["text"]) < len(full)
    assert set(tweet["note_tweet"]) == {"text", "entities"}
    assert "https://coop.example/agm" not in tweet["note_tweet"]["text"]
    assert set(tweet["note_tweet"]["entities"]) == {"urls", "hashtags"}
    assert tweet["edit_history_tweet_ids"] == ["7", "9"] and tweet["edit_controls"]["edits_remaining"] == 4


def test_make_media_and_poll_shapes() -> None:
    base = "http://127.0.0.1:1"
    photo = make_media("3_1", "photo", base_url=base, alt_text="roof")
    assert shape(photo) == {"media_key": "str", "type": "str", "width": "int", "height": "int", "url": "str",
                            "alt_text": "str"}
    assert photo["url"] == base + "/media/3_1.jpg"
    video = make_media("7_2", "video", base_url=base)
    assert set(video) == {"media_key", "type", "width", "height", "preview_image_url", "variants", "duration_ms"}
    assert video["variants"][0] == {"bit_rate": 2176000, "content_type": "video/mp4", "url": base + "/media/7_2.mp4"}
    assert set(video["variants"][1]) == {"content_type", "url"}  # HLS playlists carry no bit_rate
    gif = make_media("16_3", "animated_gif", base_url=base)
    assert "duration_ms" not in gif and gif["variants"][0]["content_type"] == "video/mp4"
    poll = make_poll("55", ["yes", "no"], duration_minutes=60)
    assert shape(poll) == {"id": "str", "options": [{"position": "int", "label": "str", "votes": "int"}],
                           "duration_minutes": "int", "end_datetime": "str", "voting_status": "str"}


def test_includes_for_expansions(x_server: FakeXServer) -> None:
    x_server.add_user("2000", "friend")
    photo = make_media("3_1", "photo", base_url=x_server.base_url)
    poll = make_poll("55", ["yes", "no"])
    quoted = make_tweet("100", "2000", "original", created_at=START, media_keys=["3_1"])
    post = make_tweet("200", "1000", "look", created_at=START, quoted="100", poll="55")
    gone = make_tweet("300", "1000", "about a deleted post", created_at=START, quoted="99")
    x_server.add_tweet(post, media=[photo], referenced=[quoted], polls=[poll])
    x_server.add_tweet(gone)
    body = get(x_server, "/2/users/1000/tweets", **{
        "expansions": "referenced_tweets.id,referenced_tweets.id.author_id,attachments.media_keys,attachments.poll_ids",
        "media.fields": "url", "poll.fields": "options,duration_minutes",
    }).json()
    assert [t["id"] for t in body["includes"]["tweets"]] == ["100"]
    assert body["includes"]["users"] == [{"id": "2000", "name": "friend", "username": "friend"}]
    assert body["includes"]["media"] == [{"media_key": "3_1", "type": "photo", "url": photo["url"]}]
    assert body["includes"]["polls"][0]["options"][0] == {"position": 1, "label": "yes", "votes": 0}
    [missing] = body["errors"]  # X reports a deleted referenced post in-band
    assert missing["resource_type"] == "tweet" and missing["resource_id"] == "99"
    assert missing["parameter"] == "referenced_tweets.id"


def test_media_bytes_are_served(x_server: FakeXServer) -> None:
    url = x_server.put_media("a.png", b"\x89PNG....", "image/png")
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"\x89PNG...." and answer.headers["content-type"] == "image/png"
    assert httpx.get(x_server.media_url("nope.png")).status_code == 404
