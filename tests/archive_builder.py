"""Build small X archives (folder or zip) in a temp dir, in the export's own format.

Why: the sample archive covers the content; these cover the shapes around it
(tweets-partN splits, the older tweet.js / tweet_media naming, bad files).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

ACCOUNT_ID = "1400000000000000001"
USERNAME = "WohnGenoNord"


def archive_tweet(post_id: str, text: str, created_at: str = "Fri Feb 20 09:10:58 +0000 2026", **fields: object) -> dict:
    """One tweets.js item: the v1.1 shape with every number as a string."""
    tweet: dict = {
        "edit_info": {"initial": {"editTweetIds": [post_id], "editableUntil": "2026-02-20T10:10:58.000Z", "editsRemaining": "5", "isEditEligible": True}},
        "retweeted": False,
        "source": '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
        "display_text_range": ["0", str(len(text))],
        "favorite_count": "0",
        "id_str": post_id,
        "truncated": False,
        "retweet_count": "0",
        "id": post_id,
        "created_at": created_at,
        "favorited": False,
        "full_text": text,
        "lang": "de",
    }
    tweet.update(fields)
    return {"tweet": tweet}


def photo(post_id: str, media_id: str, name: str, tco: str = "https://t.co/pic0000001") -> dict:
    return {
        "expanded_url": f"https://twitter.com/{USERNAME}/status/{post_id}/photo/1",
        "indices": ["10", "33"],
        "url": tco,
        "media_url": f"http://pbs.twimg.com/media/{name}",
        "id_str": media_id,
        "id": media_id,
        "media_url_https": f"https://pbs.twimg.com/media/{name}",
        "sizes": {"large": {"w": "1024", "h": "768", "resize": "fit"}, "thumb": {"w": "150", "h": "150", "resize": "crop"}},
        "type": "photo",
        "display_url": "pic.twitter.com/pic0000001",
    }


def note_tweet(
    note_id: str,
    created_at: str,
    text: str,
    *,
    urls: list[tuple[str, str]] | None = None,
    mentions: list[str] | None = None,
    hashtags: list[str] | None = None,
) -> dict:
    """One note-tweet.js item (a long post's whole text) as X writes it (EXPECTED.md, "Long posts").

    ``created_at`` is ISO-8601 (``2024-05-08T07:30:00.000Z``); ``text`` is raw (never HTML-escaped);
    ``urls`` are (t.co link, expanded URL) pairs found in ``text``. Indices count code points of ``text``.
    """

    def span(needle: str) -> dict:
        start = text.index(needle)
        return {"fromIndex": str(start), "toIndex": str(start + len(needle))}

    return {
        "noteTweet": {
            "noteTweetId": note_id,
            "updatedAt": created_at,
            "lifecycle": {"value": "4", "name": "Published", "originalName": "Published", "annotations": {}},
            "createdAt": created_at,
            "core": {
                "styletags": [],
                "urls": [
                    {"shortUrl": short, "expandedUrl": long, "displayUrl": long.split("://", 1)[-1][:26] + "…", **span(short)}
                    for short, long in urls or []
                ],
                "text": text,
                "mentions": [{"screenName": name, **span("@" + name)} for name in mentions or []],
                "cashtags": [],
                "hashtags": [{"text": tag, **span("#" + tag)} for tag in hashtags or []],
            },
        }
    }


def js(name: str, items: object, part: int = 0) -> str:
    """A data file as X writes it: ``window.YTD.<name>.partN = `` + pretty JSON, no final newline."""
    return f"window.YTD.{name}.part{part} = " + json.dumps(items, indent=2, ensure_ascii=False)


def account_js(account_id: str = ACCOUNT_ID, username: str = USERNAME) -> str:
    return js("account", [{"account": {"username": username, "accountId": account_id, "accountDisplayName": "Test eG"}}])


def write_archive(
    root: Path,
    files: dict[str, str | bytes],
    *,
    as_zip: bool = False,
) -> Path:
    """Write ``files`` (relative path -> content) as a folder at ``root`` or as ``root``.zip."""
    if as_zip:
        path = root.with_suffix(".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, content in files.items():
                zf.writestr(rel, content)
        return path
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root


def build_archive(
    root: Path,
    tweets: list[dict],
    *,
    as_zip: bool = False,
    parts: int = 1,
    old_naming: bool = False,
    media: dict[str, bytes] | None = None,
    extra: dict[str, str | bytes] | None = None,
) -> Path:
    """A minimal valid archive holding ``tweets``, split over ``parts`` tweets files.

    ``old_naming`` uses the pre-2020 names (``tweet.js``, ``YTD.tweet``, ``tweet_media/``).
    ``media`` maps file names (``<post id>-<file>``) to bytes.
    """
    base = "tweet" if old_naming else "tweets"
    files: dict[str, str | bytes] = {"data/account.js": account_js()}
    size = -(-len(tweets) // parts) if tweets else 0
    for part in range(parts):
        chunk = tweets[part * size : (part + 1) * size]
        name = f"data/{base}.js" if part == 0 else f"data/{base}-part{part}.js"
        files[name] = js(base, chunk, part)
    media_dir = "tweet_media" if old_naming else "tweets_media"
    for name, content in (media or {}).items():
        files[f"data/{media_dir}/{name}"] = content
    files.update(extra or {})
    return write_archive(root, files, as_zip=as_zip)
