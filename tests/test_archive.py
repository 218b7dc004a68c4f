"""The X archive reader: the sample export (folder and zip), archive shapes, and bad input."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import bridge.sources.archive as archive_mod
from bridge.cli import main
from bridge.errors import SourceError
from bridge.model import SourcePost, post_from_dict, post_id_key, post_to_dict
from bridge.sources.archive import Archive, ArchiveAccount, normalise_archive_tweet, open_archive
from tests.archive_builder import (
    ACCOUNT_ID,
    USERNAME,
    account_js,
    archive_tweet,
    build_archive,
    js,
    note_tweet,
    photo,
    write_archive,
)
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

TWITTER_EPOCH_MS = 1288834974657


@pytest.fixture(params=["folder", "zip"])
def sample(request: pytest.FixtureRequest, fixtures_dir: Path) -> Iterator[Archive]:
    name = "sample-coop" if request.param == "folder" else "sample-coop.zip"
    with open_archive(fixtures_dir / "x-archive" / name) as archive:
        yield archive


@pytest.fixture
def posts(sample: Archive) -> dict[str, SourcePost]:
    return {p.id: p for p in sample.iter_posts()}


# --- the sample archive: every post of EXPECTED.md -----------------------------------------


def test_sample_account_and_counts(sample: Archive, posts: dict[str, SourcePost]):
    assert sample.account() == ArchiveAccount(account_id="1400000000000000001", username="WohnGenoNord")
    assert sample.count_posts() == 33
    assert len(posts) == 33
    for post in posts.values():
        assert post.source == "archive"
        assert post.author_id == "1400000000000000001"
        assert post.author_username == "WohnGenoNord"
        # created_at is aware UTC and agrees with the snowflake id to the second
        snowflake_ms = (int(post.id) >> 22) + TWITTER_EPOCH_MS
        assert post.created_at.tzinfo is not None
        assert abs(post.created_at.timestamp() * 1000 - snowflake_ms) < 1000
        assert "&amp;" not in post.text and "&lt;" not in post.text and "&gt;" not in post.text


def test_sample_file_order_is_not_time_order(sample: Archive):
    ids = [p.id for p in sample.iter_posts()]
    assert ids != sorted(ids, key=post_id_key)
    assert ids[0] == "1836405681617046147"  # newest first, then a second run
    assert sorted(ids, key=post_id_key)[0] == "1632655794777997096"


def test_sample_text_and_entities(posts: dict[str, SourcePost]):
    assert posts["1635597336207094484"].hashtags and {h.tag for h in posts["1635597336207094484"].hashtags} == {
        "Genossenschaft",
        "Wohnen",
        "Mitbestimmung",
    }
    t03 = posts["1638548859277197939"].text
    assert "Heizkosten & Nebenkosten" in t03 and "< 50 €" in t03 and "> 50 €" in t03 and "<3" in t03
    assert "&lt;3" not in t03
    [t04] = posts["1642795447024968723"].urls
    assert t04.expanded_url.endswith("?jahr=2023&tab=tagesordnung")
    assert t04.url in posts["1642795447024968723"].text
    t05 = posts["1648345694366938920"]
    assert len(t05.urls) == 2 and all(u.url in t05.text for u in t05.urls)
    assert [m.username for m in posts["1653338224004557622"].mentions] == ["Hostsharing"]
    t12 = posts["1688974318458219416"].text
    for emoji in ("👨‍👩‍👧‍👦", "🧑‍🍳", "👋🏽", "🇩🇪", "🏳️‍🌈", "☀️"):
        assert emoji in t12
    assert posts["1693556046309146736"].text.startswith("أهلاً وسهلاً!")
    assert posts["1699101384279315092"].text == "🏠🔑❤️" and posts["1699101384279315092"].lang == "art"
    t18 = posts["1737437179782344073"]
    assert [h.tag for h in t18.hashtags if h.cashtag] == ["WGN"]
    assert "$WGN" in t18.text and "500 €" in t18.text
    assert posts["1745008143527190038"].lang == "en"
    assert posts["1809558084186060384"].lang == "und"
    t27 = posts["1824177142366869606"]
    assert len(t27.text) == 315
    assert [m.username for m in t27.mentions] == ["wohnprojekt_ost", "GenoSocialHH", "Hostsharing"]
    assert posts["1836405681617046147"].lang == "qme"
    t29 = posts["1853363846723908915"]
    assert "@wohngenonord@wohnen.social.example" in t29.text and t29.mentions == () and t29.urls == ()


def test_sample_threads_replies_quotes(posts: dict[str, SourcePost]):
    assert posts["1661819687590113148"].in_reply_to_post_id is None
    assert "\n\n" in posts["1661819687590113148"].text
    assert posts["1661820039082832020"].in_reply_to_post_id == "1661819687590113148"
    assert posts["1661820039082832020"].in_reply_to_user_id == ACCOUNT_ID
    assert posts["1661820471721131233"].in_reply_to_post_id == "1661820039082832020"
    assert posts["1668200699661199910"].in_reply_to_post_id == "1668176593727929202"
    assert posts["1668200699661199910"].in_reply_to_user_id != ACCOUNT_ID
    t07 = posts["1656269684873662508"]
    assert t07.quote_of_id == "1655940819724525609" and t07.quote_of is None
    assert not t07.is_retweet and t07.in_reply_to_post_id is None
    assert all(p.quote_of_id is None for pid, p in posts.items() if pid != "1656269684873662508")


def test_sample_retweets(posts: dict[str, SourcePost]):
    t10 = posts["1674672877940463297"]
    assert t10.retweet_of_username == "GenoSocialHH"
    assert t10.retweet_of_id is None and t10.retweet_of is None  # never invent an original
    assert t10.truncated is True
    t21 = posts["1757679105777140454"]
    assert t21.retweet_of_username == "WohnGenoNord"
    assert t21.retweet_of_id == "1753002943439525206"  # named by the media's source_status_id
    assert t21.is_retweet and t21.retweet_of is None and t21.truncated is False
    others = [p for pid, p in posts.items() if pid not in ("1674672877940463297", "1757679105777140454")]
    assert all(p.retweet_of_username is None and not p.is_retweet and not p.truncated for p in others)


def test_sample_edits(posts: dict[str, SourcePost]):
    chain = ("1764954551922106539", "1764955431286919910", "1764958793243082779")
    for pid in chain:
        assert posts[pid].edit_history_ids == chain
        assert posts[pid].original_id == "1764954551922106539"
    assert posts["1764958793243082779"].text.endswith("über die Nummer im Hausflur.")
    assert posts["1632655794777997096"].edit_history_ids == ("1632655794777997096",)


def test_sample_long_post_from_note_tweet(posts: dict[str, SourcePost]):
    t24 = posts["1788109077890706325"]
    assert len(t24.text) == 722
    assert not t24.text.endswith("…") and t24.truncated is False
    assert t24.text.endswith("Den ganzen Bericht gibt es hier: https://t.co/yaWy7Xcy6F")
    assert [(u.url, u.expanded_url) for u in t24.urls] == [
        ("https://t.co/yaWy7Xcy6F", "https://www.wohngeno-nord.example/downloads/geschaeftsbericht-2023.pdf")
    ]
    assert [h.tag for h in t24.hashtags] == ["Genossenschaft"]


def test_sample_media(sample: Archive, posts: dict[str, SourcePost], fixtures_dir: Path):
    media_dir = fixtures_dir / "x-archive" / "sample-coop" / "data" / "tweets_media"

    def file_of(pid: str, index: int = 0) -> Path:
        post = posts[pid]
        path = sample.media_path(pid, post.media[index])
        assert path is not None and path.is_file()
        assert path.read_bytes() == (media_dir / path.name).read_bytes()
        assert post.media[index].size_bytes == path.stat().st_size
        return path

    t11 = posts["1681655788369499284"]
    [m11] = t11.media
    assert (m11.type, m11.width, m11.height, m11.alt_text) == ("photo", 2048, 1536, None)  # sizes.large (4:3)
    assert m11.url == "https://pbs.twimg.com/media/F1Zw2PrfsAAVsiU.jpg"
    assert file_of("1681655788369499284").name == "1681655788369499284-F1Zw2PrfsAAVsiU.jpg"
    [link] = [u for u in t11.urls if u.media_key is not None]
    assert link.media_key == m11.key and link.url in t11.text and "/photo/1" in link.expanded_url

    t15 = posts["1709617543215268789"]
    assert [m.url.rsplit("/", 1)[1] for m in t15.media] == [
        "F7nHf3fk4AAQbrU.jpg",
        "F7nHgaKFUAAm1nk.jpg",
        "F7nHhZrUkACGAPM.jpg",
        "F7nHir45cAAW0pU.jpg",
    ]
    assert [(m.width, m.height) for m in t15.media] == [(2048, 1536), (1536, 2048), (1920, 1080), (2048, 2048)]
    assert len([u for u in t15.urls if u.media_key]) == 1
    assert [file_of("1709617543215268789", i).name.split("-", 1)[1] for i in range(4)] == [
        m.url.rsplit("/", 1)[1] for m in t15.media
    ]

    [video] = posts["1724730347960449034"].media
    assert video.type == "video" and video.duration_ms == 29967
    assert sorted((v.bit_rate or 0) for v in video.variants) == [0, 256000, 832000, 2176000]
    assert [v.bit_rate for v in video.variants if v.content_type == "application/x-mpegURL"] == [None]
    assert file_of("1724730347960449034").name == "1724730347960449034-4k3M12-geTzqf18h.mp4"

    assert posts["1730509401383358586"].sensitive is True
    assert posts["1681655788369499284"].sensitive is False
    assert file_of("1753002943439525206").suffix == ".png"
    assert file_of("1757679105777140454").name == "1757679105777140454-GFPqtew9QAA27Xo.png"  # the retweet's copy

    t23 = posts["1782438840237095480"]
    [gif] = t23.media
    assert gif.type == "animated_gif" and [v.bit_rate for v in gif.variants] == [0]
    assert t23.lang == "zxx" and t23.text == t23.urls[0].url and t23.urls[0].media_key == gif.key
    assert file_of("1782438840237095480").name == "1782438840237095480-GLx-iPk5MAB5UmM.mp4"

    with_media = {pid for pid, p in posts.items() if p.media}
    assert len(with_media) == 7  # T11 T15 T16 T17 T20 T21 T23
    assert sum(len(p.media) for p in posts.values()) == 10
    assert all(m.local_path for p in posts.values() for m in p.media)


def test_zip_and_folder_agree_and_zip_media_is_cleaned_up(fixtures_dir: Path, tmp_path: Path):
    def strip(post: SourcePost) -> dict:
        d = post_to_dict(post)
        for m in d["media"]:
            m["local_path"] = None
        return d

    with open_archive(fixtures_dir / "x-archive" / "sample-coop") as folder:
        from_folder = [strip(p) for p in folder.iter_posts()]
        assert not folder.is_zip
        in_place = next(p for p in folder.iter_posts() if p.id == "1753002943439525206")
        assert folder.with_media_files(in_place, into=tmp_path / "unused") == in_place  # folder files are used in place
        assert not (tmp_path / "unused").exists()
    archive = open_archive(fixtures_dir / "x-archive" / "sample-coop.zip")
    assert archive.is_zip
    from_zip = list(archive.iter_posts())
    assert [strip(p) for p in from_zip] == from_folder
    video_post = next(p for p in from_zip if p.id == "1724730347960449034")
    assert video_post.media[0].local_path == "data/tweets_media/1724730347960449034-4k3M12-geTzqf18h.mp4"
    extracted = archive.media_path(video_post.id, video_post.media[0])
    assert extracted is not None and extracted.is_file()
    assert archive.media_path(video_post.id, video_post.media[0]) == extracted  # extracted once
    kept = tmp_path / "kept-media"
    ready = archive.with_media_files(video_post, into=kept)
    assert ready.media[0].local_path == str(kept.resolve() / "data/tweets_media/1724730347960449034-4k3M12-geTzqf18h.mp4")
    assert Path(ready.media[0].local_path).read_bytes() == extracted.read_bytes()
    archive.close()
    assert not extracted.exists()
    assert Path(ready.media[0].local_path).is_file()  # kept after close, for uploads later
    # the ledger can store archive posts as they are
    assert all(post_from_dict(json.loads(json.dumps(post_to_dict(p)))) == p for p in from_zip)


# --- archive shapes ------------------------------------------------------------------------


def _tweets(n: int) -> list[dict]:
    return [archive_tweet(str(1800000000000000000 + i), f"Post {i} &amp; mehr\n«ü»") for i in range(n)]


@pytest.mark.parametrize("as_zip", [False, True])
def test_parts_are_read_in_numeric_order(tmp_path: Path, as_zip: bool):
    path = build_archive(tmp_path / "a", _tweets(12), parts=12, as_zip=as_zip)
    with open_archive(path) as archive:
        assert archive.tweets_files == ["data/tweets.js"] + [f"data/tweets-part{i}.js" for i in range(1, 12)]
        posts = list(archive.iter_posts())
    assert [p.id for p in posts] == [str(1800000000000000000 + i) for i in range(12)]
    assert posts[3].text == "Post 3 & mehr\n«ü»"


@pytest.mark.parametrize("as_zip", [False, True])
def test_old_naming_tweet_js_and_tweet_media(tmp_path: Path, as_zip: bool):
    pid = "1100000000000000001"
    item = archive_tweet(pid, "Altes Foto https://t.co/pic0000001", created_at="Mon Jan 14 12:00:00 +0000 2019")
    item["tweet"]["extended_entities"] = {"media": [photo(pid, "1100000000000000009", "DwzAbc.jpg")]}
    path = build_archive(tmp_path / "old", [item], old_naming=True, parts=2, media={f"{pid}-DwzAbc.jpg": b"jpeg"}, as_zip=as_zip)
    with open_archive(path) as archive:
        assert archive.tweets_files == ["data/tweet.js", "data/tweet-part1.js"]
        [post] = list(archive.iter_posts())
        assert post.created_at == datetime(2019, 1, 14, 12, tzinfo=timezone.utc)
        target = archive.media_path(pid, post.media[0])
        assert target is not None and target.read_bytes() == b"jpeg"
        assert post.media[0].size_bytes == 4


def test_flat_pre_2020_items_and_offsets(tmp_path: Path):
    flat = archive_tweet("1200000000000000001", "flach", created_at="Tue Jan 01 23:30:00 -0100 2019")["tweet"]
    path = build_archive(tmp_path / "flat", [flat])
    with open_archive(path) as archive:
        [post] = list(archive.iter_posts())
    assert post.text == "flach"
    assert post.created_at == datetime(2019, 1, 2, 0, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("as_zip", [False, True])
def test_archive_nested_in_one_top_folder(tmp_path: Path, as_zip: bool):
    files = {"twitter-2024-12-05/data/account.js": account_js(), "twitter-2024-12-05/data/tweets.js": js("tweets", _tweets(2))}
    path = write_archive(tmp_path / "nested", files, as_zip=as_zip)
    with open_archive(path) as archive:
        assert archive.account().username == USERNAME
        assert len(list(archive.iter_posts())) == 2
        assert archive.count_posts() is None  # no manifest.js


def test_missing_media_file_gives_none(tmp_path: Path):
    pid = "1300000000000000001"
    item = archive_tweet(pid, "Foto https://t.co/pic0000001")
    item["tweet"]["extended_entities"] = {"media": [photo(pid, "1300000000000000002", "Gone.jpg")]}
    path = build_archive(tmp_path / "nomedia", [item], as_zip=True)
    with open_archive(path) as archive:
        [post] = list(archive.iter_posts())
        assert post.media[0].local_path is None and post.media[0].size_bytes is None
        assert archive.media_path(pid, post.media[0]) is None


def test_folder_media_symlink_out_of_the_archive_is_refused(tmp_path: Path):
    pid = "1300000000000000005"
    secret = tmp_path / "secret.txt"
    secret.write_text("not for upload")
    item = archive_tweet(pid, "Foto https://t.co/pic0000001")
    item["tweet"]["extended_entities"] = {"media": [photo(pid, "1300000000000000006", "Link.jpg")]}
    path = build_archive(tmp_path / "sym", [item])
    (path / "data" / "tweets_media").mkdir()
    (path / "data" / "tweets_media" / f"{pid}-Link.jpg").symlink_to(secret)
    with open_archive(path) as archive, pytest.raises(SourceError, match="points outside the archive"):
        list(archive.iter_posts())


def test_quote_detected_from_x_com_permalink_not_from_own_media_link():
    item = archive_tweet(
        "1400000000000000100",
        "Lesenswert https://t.co/q",
        entities={
            "hashtags": [],
            "symbols": [],
            "user_mentions": [],
            "urls": [{"url": "https://t.co/q", "expanded_url": "https://x.com/someone/status/1399999999999999999?s=20", "display_url": "x.com/someone/…", "indices": ["11", "25"]}],
        },
    )
    post = normalise_archive_tweet(item, ArchiveAccount(ACCOUNT_ID, USERNAME))
    assert post.quote_of_id == "1399999999999999999"
    profile = archive_tweet("1400000000000000101", "Profil https://t.co/p")
    profile["tweet"]["entities"]["urls"] = [{"url": "https://t.co/p", "expanded_url": "https://twitter.com/someone", "indices": ["7", "21"]}]
    assert normalise_archive_tweet(profile, ArchiveAccount(ACCOUNT_ID, USERNAME)).quote_of_id is None


def test_streaming_across_tiny_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    """Items that straddle buffer ends parse the same as with one big read."""
    with open_archive(fixtures_dir / "x-archive" / "sample-coop") as archive:
        expected = list(archive.iter_posts())
    monkeypatch.setattr(archive_mod, "_CHUNK_CHARS", 7)
    with open_archive(fixtures_dir / "x-archive" / "sample-coop.zip") as archive:
        got = list(archive.iter_posts())
    assert [p.text for p in got] == [p.text for p in expected]
    assert [p.media for p in got] != [] and len(got) == 33


def test_posts_are_yielded_before_the_rest_of_the_file_is_read(tmp_path: Path):
    good = json.dumps(_tweets(1)[0])
    body = "window.YTD.tweets.part0 = [\n" + good + ",\n" + "{" * 10 + "broken"
    path = write_archive(tmp_path / "lazy", {"data/account.js": account_js(), "data/tweets.js": body})
    with open_archive(path) as archive:
        stream = archive.iter_posts()
        first = next(stream)
        assert first.id == "1800000000000000000"
        with pytest.raises(SourceError, match="item #1"):
            next(stream)


# --- bad input -----------------------------------------------------------------------------


def test_not_an_archive(tmp_path: Path):
    with pytest.raises(SourceError, match="no such file"):
        open_archive(tmp_path / "missing.zip")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.txt: not an X archive"):
        open_archive(text_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty: not an X archive folder: no data/ folder"):
        open_archive(tmp_path / "empty")
    nodata = write_archive(tmp_path / "nodata", {"tweets.js": js("tweets", []), "other/x.js": "x"}, as_zip=True)
    with pytest.raises(SourceError, match=r"nodata\.zip: not an X archive: the zip has no data/ folder"):
        open_archive(nodata)


@pytest.mark.parametrize("as_zip", [False, True])
def test_missing_tweets_and_account_files(tmp_path: Path, as_zip: bool):
    no_tweets = write_archive(tmp_path / "nt", {"data/account.js": account_js(), "data/like.js": js("like", [])}, as_zip=as_zip)
    with pytest.raises(SourceError, match="no tweets file"):
        open_archive(no_tweets)
    no_account = write_archive(tmp_path / "na", {"data/tweets.js": js("tweets", _tweets(1))}, as_zip=as_zip)
    with open_archive(no_account) as archive:
        with pytest.raises(SourceError, match=r"account\.js: missing"):
            list(archive.iter_posts())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("var tweets = []", ["expected 'window.YTD.tweets.part0 = '", "found 'var tweets = []'"]),
        ('[{"tweet": {}}]', ["expected 'window.YTD.tweets.part0 = '", "found '[{"]),
        ("window.YTD.like.part0 = []", ["found 'window.YTD.like.part0 ='"]),
        ("", ["found ''"]),
        ("window.YTD.tweets.part0 = {}", ["expected '['", "line 1 column 27"]),
    ],
)
def test_wrong_prefix(tmp_path: Path, content: str, words: list[str]):
    path = write_archive(tmp_path / "p", {"data/account.js": account_js(), "data/tweets.js": content})
    with open_archive(path) as archive, pytest.raises(SourceError) as err:
        list(archive.iter_posts())
    assert "tweets.js" in str(err.value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("chunk", [1 << 20, 5])
def test_truncated_and_invalid_json_name_file_and_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int):
    monkeypatch.setattr(archive_mod, "_CHUNK_CHARS", chunk)
    full = js("tweets", _tweets(3))
    cut = full[: full.index('"full_text"', full.index("1800000000000000002"))]
    path = write_archive(tmp_path / "t", {"data/account.js": account_js(), "data/tweets.js": cut})
    with open_archive(path) as archive, pytest.raises(SourceError) as err:
        list(archive.iter_posts())
    message = str(err.value)
    assert "tweets.js: truncated" in message and "item #2" in message
    assert f"line {cut.count(chr(10)) + 1} column" in message

    lines = full.split("\n")
    bad_line = next(i for i, line in enumerate(lines) if "1800000000000000001" in line and '"id_str"' in line)
    lines[bad_line] = lines[bad_line].replace('"id_str":', '"id_str"')
    path = write_archive(tmp_path / "i", {"data/account.js": account_js(), "data/tweets.js": "\n".join(lines)})
    with open_archive(path) as archive, pytest.raises(SourceError) as err:
        list(archive.iter_posts())
    message = str(err.value)
    assert "tweets.js: invalid JSON in item #1" in message
    assert f"line {bad_line + 1} column" in message and "Expecting ':' delimiter" in message

    for tail, words in (("]\nwindow.x = 1", "unexpected data after the closing ']'"), ("", "truncated")):
        body = full[: full.rindex("]")] + tail
        path = write_archive(tmp_path / f"x{len(tail)}", {"data/account.js": account_js(), "data/tweets.js": body})
        with open_archive(path) as archive, pytest.raises(SourceError, match=words):
            list(archive.iter_posts())


def test_not_utf8(tmp_path: Path):
    body = js("tweets", _tweets(1)).encode().replace(b"mehr", b"\xff\xfe\xfd")
    path = write_archive(tmp_path / "b", {"data/account.js": account_js(), "data/tweets.js": body})
    with open_archive(path) as archive, pytest.raises(SourceError, match=r"tweets\.js: not UTF-8"):
        list(archive.iter_posts())


@pytest.mark.parametrize("name", ["../evil.js", "/etc/evil.js", "data/../../evil.js", "C:/evil.js", "data\\..\\..\\evil.js"])
def test_zip_slip_is_refused(tmp_path: Path, name: str):
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/account.js", account_js())
        zf.writestr("data/tweets.js", js("tweets", []))
        zf.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(SourceError) as err:
        open_archive(path)
    assert "slip.zip" in str(err.value) and "unsafe path" in str(err.value) and repr(name) in str(err.value)


def test_zip_bomb_caps(tmp_path: Path):
    pid = "1500000000000000001"
    item = archive_tweet(pid, "Foto https://t.co/pic0000001")
    item["tweet"]["extended_entities"] = {"media": [photo(pid, "1500000000000000002", "Big.jpg")]}
    path = build_archive(tmp_path / "bomb", [item], media={f"{pid}-Big.jpg": b"\0" * 200_000}, as_zip=True)
    # declared total over the cap: refused on open
    with pytest.raises(SourceError, match=r"bomb\.zip: zip declares \d+ bytes uncompressed in total, over the cap of 100000"):
        open_archive(path, max_total_bytes=100_000)
    # one entry over the cap: refused when it is read, naming the entry
    with open_archive(path, max_entry_bytes=100_000) as archive:
        [post] = list(archive.iter_posts())
        with pytest.raises(SourceError, match=r"bomb\.zip:data/tweets_media/1500000000000000001-Big\.jpg: entry declares 200000 bytes"):
            archive.media_path(pid, post.media[0])
    # bytes actually read are counted against the total cap across the archive's life
    declared = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    with open_archive(path, max_total_bytes=declared + 10) as archive:
        list(archive.iter_posts())
        assert archive.media_path(pid, post.media[0]) is not None
        with pytest.raises(SourceError, match="passed the total cap"):
            list(archive.iter_posts())


def test_corrupt_zip_entry(tmp_path: Path):
    path = tmp_path / "crc.zip"
    body = js("tweets", _tweets(1)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("data/account.js", account_js())
        zf.writestr("data/tweets.js", body)
    raw = path.read_bytes()
    at = raw.index(b"Post 0")
    path.write_bytes(raw[:at] + b"Tost 0" + raw[at + 6 :])
    with open_archive(path) as archive, pytest.raises(SourceError, match=r"crc\.zip:data/tweets\.js: corrupt zip entry"):
        list(archive.iter_posts())


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.pop("id_str") and t.pop("id"), ["item #1", "tweet has no id_str"]),
        (lambda t: t.pop("full_text"), ["item #1 (tweet id 1800000000000000001)", "missing full_text"]),
        (lambda t: t.pop("created_at"), ["item #1 (tweet id 1800000000000000001)", "missing created_at"]),
        (lambda t: t.update(created_at="2026-02-20"), ["(tweet id 1800000000000000001)", "created_at is not like"]),
        (lambda t: t["entities"].update(urls={}), ["(tweet id 1800000000000000001)", "entities.urls must be a list"]),
        (
            lambda t: t["entities"].update(hashtags=[{"text": "x", "indices": ["a", "2"]}]),
            ["(tweet id 1800000000000000001)", "entities.hashtags[0].indices[0] is not a number"],
        ),
        (
            lambda t: t.update(extended_entities={"media": [{"type": "hologram", "id_str": "1"}]}),
            ["(tweet id 1800000000000000001)", "extended_entities.media[0].type is 'hologram'"],
        ),
    ],
)
def test_bad_tweet_items_name_index_and_id(tmp_path: Path, change, words: list[str]):
    items = _tweets(2)
    change(items[1]["tweet"])
    path = build_archive(tmp_path / "bad", items)
    with open_archive(path) as archive, pytest.raises(SourceError) as err:
        list(archive.iter_posts())
    assert "tweets.js item #1" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_non_object_item(tmp_path: Path):
    path = write_archive(tmp_path / "n", {"data/account.js": account_js(), "data/tweets.js": "window.YTD.tweets.part0 = [1]"})
    with open_archive(path) as archive, pytest.raises(SourceError, match=r"tweets\.js item #0: expected"):
        list(archive.iter_posts())


def test_bad_account_file(tmp_path: Path):
    path = write_archive(tmp_path / "acc", {"data/account.js": js("account", [{"account": {"username": "x"}}]), "data/tweets.js": js("tweets", [])})
    with open_archive(path) as archive, pytest.raises(SourceError, match=r"account\.js: item #0 account\.accountId is missing"):
        archive.account()


def test_note_tweet_joins_only_on_same_second_and_matching_prefix(tmp_path: Path):
    when = "Wed May 08 07:30:00 +0000 2024"
    whole = "Langer Text & mehr: " + "Absatz. " * 60  # note text is raw (issue 12): never unescaped
    cut = "Langer Text &amp; mehr: Absatz. Absatz.…"
    other = "Ein anderer Post zur gleichen Sekunde…"
    note = {
        "noteTweet": {
            "noteTweetId": "1788109073934348476",
            "createdAt": "2024-05-08T07:30:00.000Z",
            "core": {"text": whole, "urls": [], "mentions": [{"screenName": "GenoSocialHH", "fromIndex": "0", "toIndex": "13"}], "hashtags": [], "cashtags": [{"text": "WGN", "fromIndex": "1", "toIndex": "5"}]},
        }
    }
    items = [archive_tweet("1788109077890706325", cut, created_at=when), archive_tweet("1788109077890706326", other, created_at=when)]
    path = build_archive(tmp_path / "notes", items, extra={"data/note-tweet.js": js("note_tweet", [note])})
    with open_archive(path) as archive:
        joined, alone = list(archive.iter_posts())
    assert joined.text == "Langer Text & mehr: " + "Absatz. " * 60
    assert [m.username for m in joined.mentions] == ["GenoSocialHH"]
    assert [(h.tag, h.cashtag) for h in joined.hashtags] == [("WGN", True)]
    assert alone.text == other  # no invented join


# --- long posts as real exports ship them (issue 12) --------------------------------------------
# Four shapes seen in seven real exports, each with its note in data/note-tweet.js: the cut
# full_text is HTML-escaped and ends in "…", the note text is raw and whole.

LONG_A, LONG_A_QUOTE, LONG_B, LONG_C, LONG_D = (f"179000000000000000{i}" for i in range(1, 6))
CUT_NO_NOTE, SHORT_ELLIPSIS = "1790000000000000006", "1790000000000000007"
OTHER_USER_ID = "2200000000000000001"

PARAGRAPH = (
    "Die Mitgliederversammlung hat gestern mit großer Mehrheit beschlossen, die Häuser in der Lindenstraße "
    "bis 2027 energetisch zu sanieren. Die Nutzungsgebühren steigen dadurch nicht: Die Kosten tragen Fördermittel, "
    "Rücklagen und die Einsparung bei der Heizung. Danke an alle, die in den Arbeitsgruppen mitgedacht haben – "
    "die Pläne hängen ab Montag in allen Hausfluren aus, Fragen gern an den Vorstand."
)


def _escaped(text: str) -> str:
    """How full_text escapes a raw text: & < > only (EXPECTED.md)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, keep: int = 250) -> str:
    """The cut full_text of a long post: its first ``keep`` code points, escaped, then "…"."""
    return _escaped(text[:keep]) + "…"


def _long(post_id: str, second: int, full_text: str, **fields: object) -> dict:
    return archive_tweet(post_id, full_text, created_at=f"Thu May 16 10:00:{second:02d} +0000 2024", **fields)


def _note(second: int, text: str, **kwargs: object) -> dict:
    return note_tweet(f"17899999999999999{second:02d}", f"2024-05-16T10:00:{second:02d}.000Z", text, **kwargs)


NOTE_A = "Sanierung beschlossen! " + PARAGRAPH
NOTE_A_QUOTE = "Genau so sehen wir das auch. " + PARAGRAPH
NOTE_B = "Danke für die Einladung! " + PARAGRAPH
NOTE_C = "Unsere neue Satzung: https://t.co/NoteLnk001 – " + PARAGRAPH
NOTE_D = "Wer „&amp;“ schreibt statt „&“, meint HTML. <3 an unsere IT-AG -> " + PARAGRAPH
NOTE_CUT = "Ohne Notiz: " + PARAGRAPH


def long_posts_archive(root: Path, *, as_zip: bool = False, with_notes: bool = True) -> Path:
    """An archive with the four real shapes of a long post, a long post whose note is missing, and a short "…" post."""
    media_a = photo(LONG_A, "1790000000000000101", "GNsan1AAAA.jpg", tco="https://t.co/MediaAaaa1")
    tweets = [
        # A: the cut text ends in "… https://t.co/…": the trailing link of attached media ...
        _long(LONG_A, 1, _cut(NOTE_A) + " https://t.co/MediaAaaa1", extended_entities={"media": [media_a]},
              entities={"hashtags": [], "symbols": [], "user_mentions": [], "urls": [], "media": [media_a]}),
        # ... or of a quoted post
        _long(LONG_A_QUOTE, 2, _cut(NOTE_A_QUOTE) + " https://t.co/QuoteQqq1", entities={
            "hashtags": [], "symbols": [], "user_mentions": [],
            "urls": [{"url": "https://t.co/QuoteQqq1", "expanded_url": "https://twitter.com/GenoSocialHH/status/1789999999999999999",
                      "display_url": "twitter.com/GenoSocialHH/s…", "indices": ["252", "275"]}]}),
        # B: a reply's cut text starts with "@GenoSocialHH ", which the note lacks
        _long(LONG_B, 3, "@GenoSocialHH " + _cut(NOTE_B), in_reply_to_status_id_str="1789999999999999998",
              in_reply_to_user_id_str=OTHER_USER_ID, in_reply_to_screen_name="GenoSocialHH", entities={
                  "hashtags": [], "symbols": [], "urls": [],
                  "user_mentions": [{"name": "Geno Social", "screen_name": "GenoSocialHH", "indices": ["0", "13"],
                                     "id_str": OTHER_USER_ID, "id": OTHER_USER_ID}]}),
        # C: the t.co code in the cut text differs from the note's
        _long(LONG_C, 4, _cut(NOTE_C).replace("NoteLnk001", "CutLnk0002"), entities={
            "hashtags": [], "symbols": [], "user_mentions": [],
            "urls": [{"url": "https://t.co/CutLnk0002", "expanded_url": "https://www.wohngeno-nord.example/satzung.pdf",
                      "display_url": "wohngeno-nord.example/satzung…", "indices": ["21", "44"]}]}),
        # D: the author typed "&amp;", "<3" and "->": escaped once in full_text, raw in the note
        _long(LONG_D, 5, _cut(NOTE_D)),
        # a long post whose note is missing
        _long(CUT_NO_NOTE, 6, _cut(NOTE_CUT)),
        # a short post that ends in "…" by choice
        _long(SHORT_ELLIPSIS, 7, "Bald mehr dazu…"),
    ]
    notes = [
        _note(1, NOTE_A),
        _note(2, NOTE_A_QUOTE),
        _note(3, NOTE_B),
        _note(4, NOTE_C, urls=[("https://t.co/NoteLnk001", "https://www.wohngeno-nord.example/satzung.pdf")]),
        _note(5, NOTE_D),
    ]
    extra: dict[str, str | bytes] = {"data/note-tweet.js": js("note_tweet", notes)} if with_notes else {}
    return build_archive(root, tweets, as_zip=as_zip, media={f"{LONG_A}-GNsan1AAAA.jpg": b"\xff\xd8\xffjpeg"}, extra=extra)


@pytest.fixture(params=["folder", "zip"])
def long_posts(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, SourcePost]:
    with open_archive(long_posts_archive(tmp_path / "long", as_zip=request.param == "zip")) as archive:
        return {p.id: p for p in archive.iter_posts()}


def test_long_post_cut_before_a_trailing_media_or_quote_link_joins_its_note(long_posts: dict[str, SourcePost]):
    a = long_posts[LONG_A]
    assert a.text == NOTE_A and not a.truncated
    assert [m.key for m in a.media] == ["1790000000000000101"] and a.media[0].local_path
    assert [u.url for u in a.urls if u.media_key] == ["https://t.co/MediaAaaa1"]  # the media link survives the join
    q = long_posts[LONG_A_QUOTE]
    assert q.text == NOTE_A_QUOTE and not q.truncated
    assert q.quote_of_id == "1789999999999999999"  # the quote link sat after the ellipsis only


def test_long_reply_whose_cut_text_starts_with_a_mention_the_note_lacks_joins_its_note(long_posts: dict[str, SourcePost]):
    b = long_posts[LONG_B]
    assert b.text == "@GenoSocialHH " + NOTE_B and not b.truncated
    assert b.in_reply_to_post_id == "1789999999999999998"
    assert [(m.username, m.user_id) for m in b.mentions] == [("GenoSocialHH", OTHER_USER_ID)]


def test_long_post_whose_tco_codes_differ_from_its_note_joins_it(long_posts: dict[str, SourcePost]):
    c = long_posts[LONG_C]
    assert c.text == NOTE_C and not c.truncated
    assert [(u.url, u.expanded_url) for u in c.urls] == [("https://t.co/NoteLnk001", "https://www.wohngeno-nord.example/satzung.pdf")]


def test_note_text_is_raw_and_never_unescaped_a_second_time(long_posts: dict[str, SourcePost]):
    d = long_posts[LONG_D]
    assert d.text == NOTE_D and not d.truncated
    assert "„&amp;“" in d.text and "<3" in d.text and "->" in d.text  # what the author typed, not "&" or "&lt;"


def test_a_long_post_without_its_note_is_marked_cut_and_a_short_ellipsis_is_not(long_posts: dict[str, SourcePost]):
    cut = long_posts[CUT_NO_NOTE]
    assert cut.truncated and cut.text.endswith("…") and not cut.is_retweet
    assert not long_posts[SHORT_ELLIPSIS].truncated
    assert post_from_dict(post_to_dict(cut)).truncated  # the ledger keeps the mark


def test_long_posts_without_notes_are_all_marked_cut(tmp_path: Path):
    with open_archive(long_posts_archive(tmp_path / "nonotes", with_notes=False)) as archive:
        posts = {p.id: p for p in archive.iter_posts()}
    assert {pid for pid, p in posts.items() if p.truncated} == {LONG_A, LONG_A_QUOTE, LONG_B, LONG_C, LONG_D, CUT_NO_NOTE}


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def test_a_cut_long_post_is_warned_about_in_preview_and_dry_run_and_links_the_original(env: BridgeEnv, tmp_path: Path):
    path = long_posts_archive(tmp_path / "long", as_zip=True)
    permalink = f"https://x.com/{USERNAME}/status/{CUT_NO_NOTE}"

    r = CliRunner().invoke(main, ["--config", str(env.config_path), "preview", "--archive", str(path), "--post", CUT_NO_NOTE])
    assert r.exit_code == 0, r.output
    assert f"note: post {CUT_NO_NOTE}: the text is cut in the source" in r.stdout
    assert permalink in r.stdout  # the toot links the original post

    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "backfill", org.name, "--archive", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    summary = r.stdout[r.stdout.index(f"{org.name}: would deliver") :]
    assert "warning: 1 long posts are cut in the source" in summary
    assert f"  post {CUT_NO_NOTE}\n" in summary
    assert summary.count("  post 17900000000000000") == 1  # the joined long posts are whole, so not listed
    drafts = r.stdout[r.stdout.index(f"== post {CUT_NO_NOTE}") : r.stdout.index(f"== post {SHORT_ELLIPSIS}")]
    assert permalink in drafts and f"note: post {CUT_NO_NOTE}: the text is cut in the source" in drafts
    assert env.toots(org) == []


# --- every zip people make (issue 12, item 6) ------------------------------------------------

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # the header of a Finder "._" file


def _archive_files(prefix: str = "") -> dict[str, str | bytes]:
    pid = "1300000000000000011"
    item = archive_tweet(pid, "Foto https://t.co/pic0000001")
    item["tweet"]["extended_entities"] = {"media": [photo(pid, "1300000000000000012", "Mac.jpg")]}
    return {
        f"{prefix}data/account.js": account_js(),
        f"{prefix}data/tweets.js": js("tweets", [item, *_tweets(1)]),
        f"{prefix}data/tweets_media/{pid}-Mac.jpg": b"\xff\xd8\xffjpeg",
    }


def _assert_reads(path: Path) -> None:
    with open_archive(path) as archive:
        assert archive.account().username == USERNAME
        posts = list(archive.iter_posts())
        assert [p.id for p in posts] == ["1300000000000000011", "1800000000000000000"]
        target = archive.media_path(posts[0].id, posts[0].media[0])
        assert target is not None and target.read_bytes() == b"\xff\xd8\xffjpeg"


@pytest.mark.parametrize("as_zip", [False, True])
def test_a_zip_repacked_by_macos_finder_is_read(tmp_path: Path, as_zip: bool):
    files = _archive_files("twitter-2024-12-05-abc/")
    files.update({
        "__MACOSX/twitter-2024-12-05-abc/._data": APPLEDOUBLE,
        "__MACOSX/twitter-2024-12-05-abc/data/._tweets.js": APPLEDOUBLE,
        "__MACOSX/twitter-2024-12-05-abc/data/._account.js": APPLEDOUBLE,
        "twitter-2024-12-05-abc/.DS_Store": b"\x00\x00\x00\x01Bud1",
    })
    _assert_reads(write_archive(tmp_path / "finder", files, as_zip=as_zip))


@pytest.mark.parametrize("as_zip", [False, True])
@pytest.mark.parametrize("prefix", ["Downloads/twitter-2024-12-05/", "backup/x/twitter-2024-12-05/"])
def test_an_archive_nested_two_or_three_folders_deep_is_read(tmp_path: Path, as_zip: bool, prefix: str):
    files = _archive_files(prefix)
    files["README.txt"] = "Sicherung vom Dezember"
    _assert_reads(write_archive(tmp_path / "nested", files, as_zip=as_zip))


@pytest.mark.parametrize("as_zip", [False, True])
def test_two_archives_in_one_zip_or_folder_are_refused_naming_both(tmp_path: Path, as_zip: bool):
    files = {**_archive_files("a/"), **_archive_files("b/")}
    kind = "zip" if as_zip else "folder"
    with pytest.raises(SourceError, match=rf"two(\.zip)?: the {kind} holds more than one X archive \(a/, b/\)"):
        open_archive(write_archive(tmp_path / "two", files, as_zip=as_zip))


def test_a_zip_with_windows_backslash_paths_is_read(tmp_path: Path):
    path = tmp_path / "windows.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("twitter-2024\\data\\"), b"")
        for rel, content in _archive_files("twitter-2024/").items():
            zf.writestr(rel.replace("/", "\\"), content)
    assert all("/" not in n for n in zipfile.ZipFile(path).namelist())
    _assert_reads(path)


def test_an_entry_name_flagged_utf8_that_is_not_utf8_is_a_clear_error(tmp_path: Path, env: BridgeEnv):
    path = write_archive(tmp_path / "badname", {**_archive_files(), "data/Grüße.txt": "hallo"}, as_zip=True)
    raw = path.read_bytes()
    assert raw.count("ü".encode()) == 2  # local header and central directory, both flagged UTF-8 (bit 11)
    path.write_bytes(raw.replace("ü".encode(), b"\xfc\xfc"))
    with pytest.raises(SourceError) as err:
        open_archive(path)
    assert "badname.zip: zip entry name b'data/Gr\\xfc\\xfc\\xc3\\x9fe.txt' is flagged as UTF-8 but is not UTF-8" in str(err.value)
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "preview", "--archive", str(path), "--post", "1"])
    assert r.exit_code == 2 and "flagged as UTF-8 but is not UTF-8" in r.output  # bad input, like every other SourceError
    assert r.exception is None or isinstance(r.exception, SystemExit)


# --- limits on what a stranger's archive can make the bridge do (issue 12, item 5) -------------


def _bomb_archive(root: Path, big_bytes: int) -> Path:
    """A post whose photo entry is ``big_bytes`` of zeros (a tiny compressed zip), between two harmless posts."""
    big, small, text = "1600000000000000002", "1600000000000000003", "1600000000000000001"
    items = [
        archive_tweet(text, "Nur Text", created_at="Mon Jan 01 10:00:00 +0000 2024"),
        archive_tweet(big, "Riesig https://t.co/pic0000001", created_at="Mon Jan 01 10:00:01 +0000 2024",
                      extended_entities={"media": [photo(big, "1600000000000000012", "Big.jpg")]}),
        archive_tweet(small, "Klein https://t.co/pic0000001", created_at="Mon Jan 01 10:00:02 +0000 2024",
                      extended_entities={"media": [photo(small, "1600000000000000013", "Small.jpg")]}),
    ]
    media = {f"{big}-Big.jpg": b"\0" * big_bytes, f"{small}-Small.jpg": b"\xff\xd8\xff\xe0small"}
    return build_archive(root, items, media=media, as_zip=True)


@pytest.mark.parametrize("limit", ["x.max_media_bytes", "instance"])
def test_a_media_entry_over_the_limits_fails_only_its_post_and_is_never_extracted(env: BridgeEnv, tmp_path: Path, limit: str):
    from bridge.backfill import Backfill, BackfillOptions
    from bridge.targets.mastodon import limits_from_dict

    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    if limit == "x.max_media_bytes":
        config = env.config_path.read_text()
        env.config_path.write_text(config.replace("  timeout: 5\nmastodon:", "  timeout: 5\n  max_media_bytes: 100000\nmastodon:", 1))
        assert env.config.x.max_media_bytes == 100_000
        cap, size = 100_000, 5_000_000
    else:
        with env.ledger() as ledger:
            stored = ledger.get_org(org.name)
            assert stored is not None and stored.limits
            cap = limits_from_dict(stored.limits).image_size_limit
        size = cap + 1
    path = _bomb_archive(tmp_path / "bomb", size)
    assert path.stat().st_size < size // 100  # a small zip that declares a big file
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=path, pace=0))
        plan = run.plan()
        assert plan.to_deliver == 3
        assert f"post 1600000000000000002: media 1600000000000000012 (photo) is {size} bytes, over the limit of {cap}; that post will fail" in plan.notes
        run.record()
        extracted = [p for p in run.media_dir.rglob("*") if p.is_file()]
        assert [p.name for p in extracted] == ["1600000000000000003-Small.jpg"]  # the big entry was never written
        row = ledger.get_post(org.name, "1600000000000000002")
        assert row is not None and row.state == "failed"
        assert f"bomb.zip:data/tweets_media/1600000000000000002-Big.jpg: photo of post 1600000000000000002 is {size} bytes, over the limit of {cap}" in (row.last_error or "")
        summary = run.deliver()
    assert (summary.delivered, summary.failed) == (2, 1)
    assert summary.failures[0][0] == "1600000000000000002"
    toots = env.toots(org)
    assert [len(t["media_attachments"]) for t in toots] == [0, 1]


@pytest.mark.parametrize("where", ["tweets", "entities"])
def test_a_deeply_nested_tweets_js_is_refused_with_a_clear_error(env: BridgeEnv, tmp_path: Path, where: str):
    depth = 100_000
    deep = "[" * depth + "]" * depth
    good = json.dumps(_tweets(1)[0])
    if where == "tweets":
        item = deep
    else:
        item = good[: good.rindex("}")] + ', "entities_extra": ' + deep + "}"
    body = "window.YTD.tweets.part0 = [\n" + good + ",\n" + item + "\n]"
    path = write_archive(tmp_path / "deep", {"data/account.js": account_js(), "data/tweets.js": body})
    with open_archive(path) as archive, pytest.raises(SourceError) as err:
        list(archive.iter_posts())
    assert "tweets.js: item #1 (which starts at line 3 column 1" in str(err.value)
    assert "nested too deeply" in str(err.value)
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "preview", "--archive", str(path), "--post", "1"])
    assert r.exit_code == 2 and "nested too deeply" in r.output and not isinstance(r.exception, RecursionError)


@pytest.mark.parametrize("name", ["account.js", "tweets.js", "data"])
def test_a_folder_archive_never_follows_a_symlink_out_of_it_nor_shows_the_target(env: BridgeEnv, tmp_path: Path, name: str):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "shadow").write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    (secret / "account.js").write_text("root:$6$SECRETHASH account\n")
    (secret / "tweets.js").write_text("root:$6$SECRETHASH tweets\n")
    path = build_archive(tmp_path / "linked", _tweets(1))
    if name == "data":
        import shutil

        shutil.rmtree(path / "data")
        (path / "data").symlink_to(secret)
        where = "linked/data/account.js"
    else:
        (path / "data" / name).unlink()
        (path / "data" / name).symlink_to(secret / "shadow")
        where = f"linked/data/{name}"
    with pytest.raises(SourceError) as err, open_archive(path) as archive:
        list(archive.iter_posts())
    message = str(err.value)
    assert where in message and "points outside the archive" in message
    assert "SECRETHASH" not in message and "root:" not in message
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "preview", "--archive", str(path), "--post", "1800000000000000000"])
    assert r.exit_code == 2 and "points outside the archive" in r.output and "SECRETHASH" not in r.output


def test_a_symlink_inside_the_folder_archive_is_followed(tmp_path: Path):
    path = build_archive(tmp_path / "inside", _tweets(2))
    (path / "data" / "tweets-copy.js.orig").write_text((path / "data" / "tweets.js").read_text())
    (path / "data" / "tweets.js").unlink()
    (path / "data" / "tweets.js").symlink_to("tweets-copy.js.orig")
    with open_archive(path) as archive:
        assert len(list(archive.iter_posts())) == 2
