"""MastodonTarget against a real mastodon-mock over HTTP: what arrives, what it costs, how it fails."""

from __future__ import annotations

import base64
import itertools
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from bridge.errors import AuthError, PermanentError, RateLimited, TransientError
from bridge.model import Draft, PollDraft
from bridge.policy import InstanceLimits
from bridge.targets.mastodon import (
    MalformedAnswer,
    MastodonTarget,
    MediaProcessingTimeout,
    html_to_text,
    limits_from_dict,
    limits_from_instance,
    limits_to_dict,
    parse_ratelimit_reset,
)
from tests.mastodon_server import MastodonServer, free_port

_names = itertools.count()
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def account(mastodon: MastodonServer) -> tuple[str, MastodonTarget]:
    token = mastodon.create_account(f"tgtcoop{next(_names)}")
    return token, MastodonTarget(mastodon.base_url, token, timeout=5)


def draft(text: str, post_id: str = "100", part: int = 0, **kw: object) -> Draft:
    return Draft(post_id=post_id, part=part, text=text, **kw)  # type: ignore[arg-type]


@pytest.fixture
def png(tmp_path: Path) -> Path:
    p = tmp_path / "door.png"
    p.write_bytes(PNG_1x1)
    return p


class RequestCounter:
    """Counts requests that reach mastodon-mock through a pass-through fault rule's budget.

    mastodon-mock has no request log; a "latency 0" rule matching everything
    decrements its ``remaining`` once per request. Add it after any other rule.
    """

    BUDGET = 10_000

    def __init__(self, mastodon: MastodonServer) -> None:
        self.mastodon = mastodon
        self.rule_id = mastodon.add_fault({"match": {}, "effect": {"type": "latency", "delay_ms": 0}, "count": self.BUDGET})

    @property
    def seen(self) -> int:
        rule = next(r for r in self.mastodon.faults() if r["id"] == self.rule_id)
        return self.BUDGET - int(rule["remaining"])


# -- request economy -------------------------------------------------------------


def test_construction_sends_nothing_and_a_text_post_costs_one_request(mastodon: MastodonServer) -> None:
    token = mastodon.create_account(f"tgtcoop{next(_names)}")
    counter = RequestCounter(mastodon)
    target = MastodonTarget(mastodon.base_url, token)
    assert counter.seen == 0
    target.post_status(draft("hello"), idempotency_key="econ-1")
    assert counter.seen == 1
    assert target.request_count == 1


def test_an_image_upload_and_post_cost_two_requests(mastodon: MastodonServer, png: Path) -> None:
    """No hidden version probe before the upload (Mastodon.py would add 2 requests)."""
    _, target = account(mastodon)
    counter = RequestCounter(mastodon)
    media_id = target.upload_media(str(png), "image/png", "a door")
    target.post_status(draft("with a picture"), idempotency_key="econ-2", media_ids=[media_id])
    assert counter.seen == 2 and target.request_count == 2


# -- instance limits ---------------------------------------------------------------


def test_limits_are_read_from_the_instance(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    served = httpx.get(f"{mastodon.base_url}/api/v2/instance").json()["configuration"]
    limits = target.instance_limits()
    assert limits.max_characters == served["statuses"]["max_characters"]
    assert limits.image_size_limit == served["media_attachments"]["image_size_limit"] == 10485760
    assert limits.video_size_limit == served["media_attachments"]["video_size_limit"]
    assert limits.supported_mime_types == tuple(served["media_attachments"]["supported_mime_types"])
    assert limits.description_limit == InstanceLimits().description_limit  # the mock sends none: default
    assert limits.supports_quotes  # api_versions.mastodon 10 >= 7


def test_limits_from_a_recorded_mastodon_4_6(fixtures_dir: Path) -> None:
    body = json.loads((fixtures_dir / "mastodon-api" / "test_instance.json").read_text())[0]["body"]
    limits = limits_from_instance(body)
    assert (limits.max_characters, limits.max_media_attachments, limits.characters_reserved_per_url) == (500, 4, 23)
    assert (limits.image_size_limit, limits.video_size_limit, limits.description_limit) == (16777216, 103809024, 10000)
    assert (limits.poll_max_options, limits.poll_max_expiration) == (4, 2629746)
    assert "video/mp4" in limits.supported_mime_types and limits.supports_quotes
    older = dict(body, api_versions={"mastodon": 6})
    assert not limits_from_instance(older).supports_quotes  # quotes need API version 7 (Mastodon 4.5)
    assert limits_from_dict(json.loads(json.dumps(limits_to_dict(limits)))) == limits
    assert limits_from_dict({"max_characters": 1000, "from_the_future": 1}) == InstanceLimits(max_characters=1000)


# -- posting ---------------------------------------------------------------------------


def test_upload_with_description_and_post_with_media(mastodon: MastodonServer, png: Path) -> None:
    token, target = account(mastodon)
    media_id = target.upload_media(str(png), None, "A blue front door")
    posted = target.post_status(
        draft("Open day!", visibility="unlisted", language="en", sensitive=True, spoiler_text="housing"),
        idempotency_key="media-1",
        media_ids=[media_id],
    )
    (status,) = mastodon.statuses(token)
    assert status["id"] == posted.id and status["url"] == posted.url
    assert [(m["id"], m["type"], m["description"]) for m in status["media_attachments"]] == [
        (media_id, "image", "A blue front door")
    ]
    assert (status["visibility"], status["language"], status["sensitive"], status["spoiler_text"]) == (
        "unlisted",
        "en",
        True,
        "housing",
    )
    assert posted.created_at.tzinfo is not None


def test_same_idempotency_key_twice_gives_one_status(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    first = target.post_status(draft("only once"), idempotency_key="coop:100:0")
    again = MastodonTarget(mastodon.base_url, token).post_status(draft("only once"), idempotency_key="coop:100:0")
    assert again.id == first.id
    assert len(mastodon.statuses(token)) == 1


def test_reply_uses_in_reply_to_id_without_a_mention_prefix(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    parent = target.post_status(draft("part one", part=0), idempotency_key="t-0")
    child = target.post_status(draft("part two", part=1), idempotency_key="t-1", in_reply_to_id=parent.id)
    by_id = {s["id"]: s for s in mastodon.statuses(token)}
    assert by_id[child.id]["in_reply_to_id"] == parent.id
    assert by_id[child.id]["content"] == "<p>part two</p>"  # no "@coopN " in front


def test_poll_and_native_quote(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    quoted = target.post_status(draft("original"), idempotency_key="q-0")
    quote = target.post_status(draft("look at this", post_id="101"), idempotency_key="q-1", quote_id=quoted.id)
    poll = target.post_status(
        draft("which day?", post_id="102", poll=PollDraft(options=("Sat", "Sun"), expires_in=3600)), idempotency_key="p-0"
    )
    by_id = {s["id"]: s for s in mastodon.statuses(token)}
    assert by_id[quote.id]["quote"]["quoted_status"]["id"] == quoted.id
    assert [o["title"] for o in by_id[poll.id]["poll"]["options"]] == ["Sat", "Sun"]


def test_boost_and_edit(mastodon: MastodonServer) -> None:
    token_a, a = account(mastodon)
    token_b, b = account(mastodon)
    original = a.post_status(draft("news"), idempotency_key="b-0")
    boost = b.boost(original.id)
    (reblog,) = mastodon.statuses(token_b)
    assert reblog["id"] == boost.id and reblog["reblog"]["id"] == original.id and boost.url

    edited = a.edit_status(original.id, draft("news, corrected"))
    assert edited.id == original.id
    (status,) = mastodon.statuses(token_a)
    assert status["content"] == "<p>news, corrected</p>" and status["edited_at"]


def test_delete_removes_the_status_and_a_status_already_gone_counts_as_deleted(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    keep = target.publish(draft("stays"), idempotency_key="d-0")
    gone = target.publish(draft("goes"), idempotency_key="d-1")
    target.request_count = 0
    target.delete(gone.id)
    assert target.request_count == 1  # DELETE /api/v1/statuses/:id
    assert [s["id"] for s in mastodon.statuses(token)] == [keep.id]
    target.delete(gone.id)  # a retry after a crash: 404 is what we wanted
    assert [s["id"] for s in mastodon.statuses(token)] == [keep.id]


def test_the_target_interface_publishes_finds_and_edits_copies(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    me = target.verify()
    first = target.publish(draft("one"), idempotency_key="t-0")
    assert target.publish(draft("one"), idempotency_key="t-0") == first  # same key: the same copy
    reply = target.publish(draft("two"), idempotency_key="t-1", in_reply_to=first.id)
    assert [(p.id, p.text) for p in target.find_published(me.id, None)] == [(first.id, "one"), (reply.id, "two")]
    assert target.edit(first.id, draft("one, corrected")).id == first.id
    assert target.length("https://example.org/" + "x" * 100) == 23  # a URL counts 23
    assert target.mention("coop@social.example") == "@coop@social.example"
    assert target.status_pace.seconds_each == 36 and target.media_pace.seconds_each == 60


def test_own_statuses_since_follows_pagination_oldest_first(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    me = target.verify()
    first = target.post_status(draft("one"), idempotency_key="r-0")
    second = target.post_status(draft("two & more"), idempotency_key="r-1")
    third = target.post_status(draft("three"), idempotency_key="r-2", in_reply_to_id=second.id)
    target.request_count = 0
    found = target.own_statuses_since(me.id, first.id, limit=1)
    assert [s["id"] for s in found] == [second.id, third.id]
    assert [s["text"] for s in found] == ["two & more", "three"]
    assert found[1]["in_reply_to_id"] == second.id and found[0]["url"] == second.url
    assert target.request_count == 3  # two full pages of 1, then an empty one
    assert [s["id"] for s in target.own_statuses_since(me.id, None)] == [first.id, second.id, third.id]
    target.request_count = 0
    assert [s["id"] for s in target.own_statuses_since(me.id, None, limit=1, max_pages=2)] == [second.id, third.id]
    assert target.request_count == 2  # bounded: the oldest are dropped first
    newest_two = target.own_statuses_since(me.id, None, not_before=found[0]["created_at"])
    assert [s["id"] for s in newest_two] == [second.id, third.id]


def test_verify_names_the_account(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    me = target.verify()
    assert me.acct == me.username and me.url.endswith(f"/@{me.username}") and me.id


def test_own_statuses_since_can_read_upwards_so_the_oldest_are_never_dropped(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    me = target.verify()
    posted = [target.post_status(draft(f"s{n}"), idempotency_key=f"up-{n}") for n in range(5)]
    target.request_count = 0
    first_page = target.own_statuses_since(me.id, posted[0].id, limit=2, max_pages=1, oldest_first=True)
    assert [s["text"] for s in first_page] == ["s1", "s2"]  # right after since_id, not the newest
    assert [s["text"] for s in target.own_statuses_since(me.id, posted[0].id, limit=2, max_pages=1)] == ["s3", "s4"]
    target.request_count = 0
    assert [s["id"] for s in target.own_statuses_since(me.id, posted[0].id, limit=2, oldest_first=True)] == [
        p.id for p in posted[1:]
    ]
    assert target.request_count == 3  # pages of 2, 2, then an empty one


def test_html_to_text() -> None:
    assert html_to_text("<p>a &amp; b<br>c</p><p>d</p>") == "a & b\nc\n\nd"


def test_html_to_text_gives_a_links_whole_url_however_its_display_is_cut() -> None:
    url = "https://example.org/news/2026/solar-panels-on-every-roof"
    hidden = (f'<p><a href="{url}" rel="nofollow noopener" translate="no"><span class="invisible">https://</span>'
              '<span class="ellipsis">example.org/news/2026/solar-pa</span><span class="invisible">nels-on-every-roof</span></a></p>')
    assert html_to_text(hidden) == url  # Mastodon: the hidden spans hold the rest
    assert html_to_text(f'<p>see <a href="{url}">example.org/news/2026/solar-pa…</a> now</p>') == f"see {url} now"
    assert html_to_text(f'<p><a href="{url}">our news</a></p>') == "our news"  # a named link keeps its name
    assert html_to_text('<p><a href="https://geno.social/tags/energy" class="mention hashtag" rel="tag">#<span>energy</span></a></p>') == "#energy"


# -- media still processing (202 -> 206 -> 200) ---------------------------------------------


class FakeClock:
    """Time that moves only when the code under test sleeps: no real waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _processing_upload(mastodon: MastodonServer, token: str, png: Path, polls: int | None) -> str:
    """Make the next upload answer 202 and the next ``polls`` media reads answer 206, as a
    real server does for a video. The 202 names a real unattached upload, so the final
    200 and the status post are genuine."""
    real_id = MastodonTarget(mastodon.base_url, token).upload_media(str(png), "image/png", "clip")
    processing = {"id": real_id, "type": "video", "url": None, "preview_url": None, "description": "clip"}
    mastodon.add_fault(
        {"match": {"methods": ["POST"], "path": "/api/v2/media"}, "effect": {"type": "status", "status": 202, "body": processing}, "count": 1}
    )
    mastodon.add_fault(
        {"match": {"methods": ["GET"], "path": f"/api/v1/media/{real_id}"}, "effect": {"type": "status", "status": 206, "body": processing}, "count": polls}
    )
    return real_id


def test_upload_202_is_polled_until_processed(mastodon: MastodonServer, png: Path) -> None:
    token = mastodon.create_account(f"tgtcoop{next(_names)}")
    real_id = _processing_upload(mastodon, token, png, polls=2)
    clock = FakeClock()
    target = MastodonTarget(mastodon.base_url, token, clock=clock, sleep=clock.sleep)
    assert target.upload_media(str(png), "video/mp4", "clip") == real_id
    assert target.request_count == 4  # POST 202, GET 206, GET 206, GET 200
    assert clock.sleeps == [0.5, 1.0, 2.0]  # backoff, never synchronous=True's endless 5 s loop
    posted = target.post_status(draft("video"), idempotency_key="v-0", media_ids=[real_id])
    assert mastodon.statuses(token)[0]["id"] == posted.id


def test_upload_still_processing_times_out_as_transient(mastodon: MastodonServer, png: Path) -> None:
    token = mastodon.create_account(f"tgtcoop{next(_names)}")
    real_id = _processing_upload(mastodon, token, png, polls=None)
    clock = FakeClock()
    target = MastodonTarget(mastodon.base_url, token, media_poll_timeout=10, clock=clock, sleep=clock.sleep)
    with pytest.raises(MediaProcessingTimeout) as caught:
        target.upload_media(str(png), "video/mp4", "clip")
    assert isinstance(caught.value, TransientError) and caught.value.media_id == real_id
    assert real_id in str(caught.value) and mastodon.base_url in str(caught.value)
    assert sum(clock.sleeps) == pytest.approx(10) and max(clock.sleeps) <= 8
    mastodon.clear_faults()
    assert target.wait_for_media(real_id) == real_id  # a later attempt resumes instead of re-uploading


def test_unreadable_or_untyped_media_is_permanent(tmp_path: Path, mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    with pytest.raises(PermanentError, match="missing.png"):
        target.upload_media(str(tmp_path / "missing.png"), "image/png", None)
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    with pytest.raises(PermanentError, match="media type"):
        target.upload_media(str(blob), None, None)
    assert target.request_count == 0


# -- error mapping ------------------------------------------------------------------------------


def test_revoked_token_is_an_auth_error(mastodon: MastodonServer) -> None:
    app = httpx.post(
        f"{mastodon.base_url}/api/v1/apps",
        data={"client_name": "t", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob", "scopes": "read write"},
    ).json()
    token, target = account(mastodon)
    target.revoke(app["client_id"], app["client_secret"])
    with pytest.raises(AuthError) as caught:
        MastodonTarget(mastodon.base_url, token).post_status(draft("after revoke"), idempotency_key="x")
    message = str(caught.value)
    assert "relink" in message and mastodon.base_url in message
    assert token not in message and app["client_secret"] not in message


def test_403_is_an_auth_error(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    mastodon.add_fault({"match": {"path": "/api/v1/accounts/verify_credentials"}, "effect": {"type": "status", "status": 403}, "count": 1})
    with pytest.raises(AuthError, match="403"):
        target.verify()


def test_422_is_permanent_with_the_server_text(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    with pytest.raises(PermanentError) as caught:
        target.post_status(draft(""), idempotency_key="empty")
    assert "Text can't be blank" in str(caught.value) and "post 100 part 0" in str(caught.value)
    assert token not in str(caught.value)


def test_404_on_a_referenced_status_is_parent_gone(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    with pytest.raises(PermanentError, match="parent gone: status 999999"):
        target.boost("999999")
    mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"}, "effect": {"type": "status", "status": 404, "body": {"error": "Record not found"}}, "count": 1})
    with pytest.raises(PermanentError, match="parent gone: status 123"):
        target.post_status(draft("reply"), idempotency_key="gone", in_reply_to_id="123")


def test_429_with_epoch_reset_is_rate_limited_until_then(mastodon: MastodonServer) -> None:
    token, target = account(mastodon)
    mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"}, "effect": {"type": "ratelimit"}, "count": 1})
    before = datetime.now(timezone.utc)
    with pytest.raises(RateLimited) as caught:
        target.post_status(draft("later"), idempotency_key="rl-1")
    assert caught.value.retry_at is not None
    assert before + timedelta(seconds=295) <= caught.value.retry_at <= before + timedelta(seconds=305)
    assert token not in str(caught.value)
    assert mastodon.statuses(token) == []


def test_429_with_iso_reset_as_real_mastodon_sends(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    reset = (datetime.now(timezone.utc) + timedelta(minutes=7)).replace(microsecond=441909)
    header = reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as recorded from Mastodon 4.6
    mastodon.add_fault(
        {"match": {"path": "/api/v2/media"}, "effect": {"type": "ratelimit", "headers": {"X-RateLimit-Reset": header}}, "count": 1}
    )
    with pytest.raises(RateLimited) as caught:
        target.upload_media(__file__, "text/plain", None)
    assert caught.value.retry_at == reset


def test_parse_ratelimit_reset() -> None:
    assert parse_ratelimit_reset("2026-08-01T13:55:00.441909Z") == datetime(2026, 8, 1, 13, 55, 0, 441909, tzinfo=timezone.utc)
    assert parse_ratelimit_reset("1785592500") == datetime.fromtimestamp(1785592500, tz=timezone.utc)
    assert parse_ratelimit_reset("soon") is None and parse_ratelimit_reset(None) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(mastodon: MastodonServer, status: int) -> None:
    token, target = account(mastodon)
    mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"}, "effect": {"type": "status", "status": status}, "count": 1})
    with pytest.raises(TransientError) as caught:
        target.post_status(draft("x"), idempotency_key="5xx")
    assert not isinstance(caught.value, RateLimited) and str(status) in str(caught.value)
    assert target.post_status(draft("x"), idempotency_key="5xx").id  # the retry goes through


_WRITES = {
    "post_status": ("POST", "/api/v1/statuses"),
    "boost": ("POST", "/api/v1/statuses/{id}/reblog"),
    "edit_status": ("PUT", "/api/v1/statuses/{id}"),
    "upload_media": ("POST", "/api/v2/media"),
}


@pytest.mark.parametrize("body", [[], {"content": "<p>no id</p>"}, {"id": None}], ids=["list", "no-id", "null-id"])
@pytest.mark.parametrize("write", list(_WRITES))
def test_a_200_without_an_entity_is_a_malformed_answer_never_an_id(
    mastodon: MastodonServer, png: Path, write: str, body: object
) -> None:
    """A JSON list or an object without ``id`` must never become a status id ``None``."""
    _, target = account(mastodon)
    original = target.post_status(draft("original"), idempotency_key=f"orig-{write}")
    method, path = _WRITES[write]
    mastodon.add_fault({"match": {"methods": [method], "path": path.format(id=original.id)},
                        "effect": {"type": "status", "status": 200, "body": body}, "count": 1})
    calls = {
        "post_status": lambda: target.post_status(draft("new"), idempotency_key=f"new-{write}"),
        "boost": lambda: target.boost(original.id),
        "edit_status": lambda: target.edit_status(original.id, draft("edited")),
        "upload_media": lambda: target.upload_media(str(png), "image/png", "a door"),
    }
    with pytest.raises(MalformedAnswer) as caught:
        calls[write]()
    assert isinstance(caught.value, TransientError) and mastodon.base_url in str(caught.value)
    assert "malformed" in str(caught.value)


def test_a_malformed_status_list_is_transient_not_an_empty_history(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    me = target.verify()
    target.post_status(draft("kept"), idempotency_key="list-0")
    for body in ({"statuses": []}, [{"content": "<p>no id</p>"}]):
        mastodon.add_fault({"match": {"methods": ["GET"], "path": f"/api/v1/accounts/{me.id}/statuses"},
                            "effect": {"type": "status", "status": 200, "body": body}, "count": 1})
        with pytest.raises(MalformedAnswer):
            target.own_statuses_since(me.id, None)
    assert [s["text"] for s in target.own_statuses_since(me.id, None)] == ["kept"]


def test_malformed_body_is_transient(mastodon: MastodonServer) -> None:
    _, target = account(mastodon)
    mastodon.add_fault({"match": {"path": "/api/v1/accounts/verify_credentials"}, "effect": {"type": "malformed"}, "count": 1})
    with pytest.raises(TransientError, match="malformed"):
        target.verify()


def test_timeout_is_transient_and_quick(mastodon: MastodonServer) -> None:
    token = mastodon.create_account(f"tgtcoop{next(_names)}")
    target = MastodonTarget(mastodon.base_url, token, timeout=0.3)
    # A slow answer ("latency") rather than the "timeout" effect, which holds the
    # connection 30 s and so delays the mock's shutdown at the end of the session.
    mastodon.add_fault({"match": {"path": "/api/v1/accounts/verify_credentials"}, "effect": {"type": "latency", "delay_ms": 1500}, "count": 1})
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        target.verify()
    assert time.monotonic() - started < 3
    assert mastodon.base_url in str(caught.value) and token not in str(caught.value)


def test_unreachable_instance_is_transient() -> None:
    target = MastodonTarget(f"http://127.0.0.1:{free_port()}", "secret-token-value", timeout=2)
    with pytest.raises(TransientError) as caught:
        target.verify()
    assert "127.0.0.1" in str(caught.value) and "secret-token-value" not in str(caught.value)
    assert "secret-token-value" not in repr(target)

