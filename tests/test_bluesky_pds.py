"""The reference Bluesky PDS fixture, proved with real records over real HTTP.

These are the PDS behaviours the Bluesky source and target (issues 15 and 16) build on; each test
pins one, so a PDS upgrade that changes it fails here first. Lexicons:
https://github.com/bluesky-social/atproto/tree/main/lexicons
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

from tests.bluesky_pds import BlueskyPds

pytestmark = pytest.mark.bluesky

POST = "app.bsky.feed.post"
CREATED_AT = "2026-12-01T12:00:00.000Z"
# Record keys of app.bsky.feed.post are TIDs: 13 base32-sortable characters.
# https://atproto.com/specs/tid
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"


def tid(micros: int, clock_id: int = 0) -> str:
    """The TID for a microsecond timestamp (a deterministic record key, as a bridge would derive one)."""
    n = (micros << 10) | clock_id
    return "".join(TID_ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def tiny_png() -> bytes:
    """A valid 1x1 red PNG, built here so the test needs no binary file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def create_post(pds: BlueskyPds, did: str, jwt: str, record: dict[str, Any], rkey: str | None = None) -> Any:
    body: dict[str, Any] = {
        "repo": did,
        "collection": POST,
        "record": {"$type": POST, "createdAt": CREATED_AT, **record},
    }
    if rkey is not None:
        body["rkey"] = rkey
    return pds.client.post(pds.xrpc("com.atproto.repo.createRecord"), headers=auth(jwt), json=body)


def test_an_account_made_through_the_api_logs_in_with_its_app_password(bluesky_pds: BlueskyPds) -> None:
    did, _jwt, app_password = bluesky_pds.create_account("geno-login.test")

    session = bluesky_pds.client.post(
        bluesky_pds.xrpc("com.atproto.server.createSession"),
        json={"identifier": "geno-login.test", "password": app_password},
    )

    assert session.status_code == 200, session.text
    assert session.json()["did"] == did
    assert did.startswith("did:plc:")
    assert session.json()["handle"] == "geno-login.test"


def test_a_post_with_facets_is_listed_back_without_auth(bluesky_pds: BlueskyPds) -> None:
    alice, alice_jwt, _ = bluesky_pds.create_account("alice-facets.test")
    bob, _, _ = bluesky_pds.create_account("bob-facets.test")
    text = "Grüße an @bob-facets.test: https://geno.social/about"
    # Facet offsets count UTF-8 bytes, not characters ("ü" and "ß" are two bytes each).
    # https://docs.bsky.app/docs/advanced-guides/post-richtext
    raw = text.encode()
    mention = raw.index(b"@bob")
    link = raw.index(b"https://")
    facets = [
        {
            "index": {"byteStart": mention, "byteEnd": mention + len(b"@bob-facets.test")},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": bob}],
        },
        {
            "index": {"byteStart": link, "byteEnd": len(raw)},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://geno.social/about"}],
        },
    ]

    created = create_post(bluesky_pds, alice, alice_jwt, {"text": text, "facets": facets, "langs": ["de"]})
    assert created.status_code == 200, created.text
    uri = created.json()["uri"]
    assert uri.startswith(f"at://{alice}/{POST}/")

    listed = bluesky_pds.client.get(
        bluesky_pds.xrpc("com.atproto.repo.listRecords"), params={"repo": alice, "collection": POST}
    )
    assert listed.status_code == 200, listed.text
    [record] = listed.json()["records"]
    assert record["uri"] == uri
    assert record["cid"] == created.json()["cid"]
    assert record["value"]["text"] == text
    assert record["value"]["facets"] == facets
    assert raw[mention : mention + len(b"@bob-facets.test")].decode() == "@bob-facets.test"


def test_a_handle_resolves_to_its_did_and_the_plc_serves_its_did_document(bluesky_pds: BlueskyPds) -> None:
    did, _, _ = bluesky_pds.create_account("geno-resolve.test")

    resolved = bluesky_pds.client.get(
        bluesky_pds.xrpc("com.atproto.identity.resolveHandle"), params={"handle": "geno-resolve.test"}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"did": did}

    # A did:plc document lives at PLC_URL/DID. https://web.plc.directory/spec/v0.1/did-plc
    document = bluesky_pds.client.get(f"{bluesky_pds.plc_url}/{did}")
    assert document.status_code == 200, document.text
    doc = document.json()
    assert doc["id"] == did
    assert doc["alsoKnownAs"] == ["at://geno-resolve.test"]
    [service] = [s for s in doc["service"] if s["id"] == "#atproto_pds"]
    assert service == {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": bluesky_pds.url}


def test_an_uploaded_png_is_embedded_in_a_post_with_its_alt_text(bluesky_pds: BlueskyPds) -> None:
    did, jwt, _ = bluesky_pds.create_account("geno-images.test")
    png = tiny_png()

    uploaded = bluesky_pds.client.post(
        bluesky_pds.xrpc("com.atproto.repo.uploadBlob"), headers={**auth(jwt), "Content-Type": "image/png"}, content=png
    )
    assert uploaded.status_code == 200, uploaded.text
    blob = uploaded.json()["blob"]
    assert blob["$type"] == "blob"
    assert blob["mimeType"] == "image/png"
    assert blob["size"] == len(png)

    embed = {
        "$type": "app.bsky.embed.images",
        "images": [{"alt": "A red dot", "image": blob, "aspectRatio": {"width": 1, "height": 1}}],
    }
    created = create_post(bluesky_pds, did, jwt, {"text": "A picture", "embed": embed})
    assert created.status_code == 200, created.text

    rkey = created.json()["uri"].rsplit("/", 1)[1]
    got = bluesky_pds.client.get(
        bluesky_pds.xrpc("com.atproto.repo.getRecord"), params={"repo": did, "collection": POST, "rkey": rkey}
    )
    assert got.status_code == 200, got.text
    [image] = got.json()["value"]["embed"]["images"]
    assert image["alt"] == "A red dot"
    assert image["image"]["ref"] == blob["ref"]

    # Once a record references it, the blob is served back byte for byte.
    fetched = bluesky_pds.client.get(
        bluesky_pds.xrpc("com.atproto.sync.getBlob"), params={"did": did, "cid": blob["ref"]["$link"]}
    )
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == png


def test_creating_a_record_under_an_existing_rkey_answers_500_and_get_record_finds_the_first(
    bluesky_pds: BlueskyPds,
) -> None:
    did, jwt, _ = bluesky_pds.create_account("geno-rkey.test")
    rkey = tid(1_764_590_400_000_000)  # 2025-12-01T12:00:00Z

    first = create_post(bluesky_pds, did, jwt, {"text": "first"}, rkey=rkey)
    assert first.status_code == 200, first.text
    assert first.json()["uri"] == f"at://{did}/{POST}/{rkey}"

    # Not a 4xx conflict: the PDS answers 500 and says why only in its log. A client retrying with
    # a deterministic key must treat a failed create as "maybe exists" and read it back.
    again = create_post(bluesky_pds, did, jwt, {"text": "second"}, rkey=rkey)
    assert again.status_code == 500, again.text
    assert again.json()["error"] == "InternalServerError"

    got = bluesky_pds.client.get(
        bluesky_pds.xrpc("com.atproto.repo.getRecord"), params={"repo": did, "collection": POST, "rkey": rkey}
    )
    assert got.status_code == 200, got.text
    assert got.json()["value"]["text"] == "first"
    assert got.json()["cid"] == first.json()["cid"]


def test_the_pds_rejects_a_post_text_over_300_graphemes(bluesky_pds: BlueskyPds) -> None:
    did, jwt, _ = bluesky_pds.create_account("geno-long.test")
    # app.bsky.feed.post text: maxGraphemes 300. "é" as e + combining accent is one grapheme, two code points.
    fits = create_post(bluesky_pds, did, jwt, {"text": "e\u0301" * 300})
    assert fits.status_code == 200, fits.text

    too_long = create_post(bluesky_pds, did, jwt, {"text": "a" * 301})
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"] == "InvalidRequest"


def test_list_records_returns_a_cursor_on_its_last_page_too(bluesky_pds: BlueskyPds) -> None:
    did, jwt, _ = bluesky_pds.create_account("geno-pages.test")
    for n in range(3):
        assert create_post(bluesky_pds, did, jwt, {"text": f"post {n}"}).status_code == 200

    def page(cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"repo": did, "collection": POST, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = bluesky_pds.client.get(bluesky_pds.xrpc("com.atproto.repo.listRecords"), params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = page(None)
    last = page(first["cursor"])
    assert [len(first["records"]), len(last["records"])] == [2, 1]
    # Stop on a short page: the cursor alone does not say "no more".
    assert last.get("cursor")
    assert page(last["cursor"])["records"] == []


def test_get_latest_commit_tells_whether_a_repository_changed(bluesky_pds: BlueskyPds) -> None:
    did, jwt, _ = bluesky_pds.create_account("geno-commits.test")

    def latest() -> str:
        r = bluesky_pds.client.get(bluesky_pds.xrpc("com.atproto.sync.getLatestCommit"), params={"did": did})
        assert r.status_code == 200, r.text
        return str(r.json()["rev"])

    before = latest()
    assert latest() == before
    assert create_post(bluesky_pds, did, jwt, {"text": "news"}).status_code == 200
    assert latest() > before  # revs are TIDs: they sort by time
