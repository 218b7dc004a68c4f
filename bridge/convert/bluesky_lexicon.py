"""Bluesky's limits, as its lexicons state them: the one place the renderer and the target read them from.

Each number is the lexicon's (https://github.com/bluesky-social/atproto/tree/main/lexicons), as the
reference PDS the tests run (@atproto/pds 0.5.35) enforces it when a record is created;
tests/test_target_bluesky_pds.py reads the PDS's own lexicon files and fails when one differs.
"""

from __future__ import annotations

# app.bsky.feed.post, record.text: {"maxLength": 3000, "maxGraphemes": 300} (UTF-8 bytes, grapheme clusters).
POST_MAX_GRAPHEMES = 300
POST_MAX_BYTES = 3000
# app.bsky.feed.post, record.langs: {"maxLength": 3}.
POST_MAX_LANGS = 3
# app.bsky.embed.images: {"images": {"maxLength": 4}}, image: {"accept": ["image/*"], "maxSize": 2000000}.
IMAGES_PER_POST = 4
IMAGE_MAX_BYTES = 2_000_000
# app.bsky.embed.video, video: {"accept": ["video/mp4"], "maxSize": 300000000}.
VIDEO_MAX_BYTES = 300_000_000
# app.bsky.richtext.facet#tag, tag: {"maxLength": 640, "maxGraphemes": 64}.
TAG_MAX_GRAPHEMES = 64
TAG_MAX_BYTES = 640

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"
