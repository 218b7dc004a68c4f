"""Bluesky polling at scale (issue 15): 1,000 Bluesky organisations (quick: 50), idle, with news and with deletes.

The reference PDS is too slow to host 1,000 accounts on a shared machine, so the
accounts live in a small loopback stand-in (in a thread of this process) that
answers the XRPC endpoints the source calls with the shapes the reference PDS
answers (recorded from @atproto/pds 0.5.35: getLatestCommit, listRecords, the PLC
directory's DID document). Behaviour is tested against the real PDS
(tests/test_bluesky_*.py); this measures cost only. The source reads the way the
pipeline does: ``read_new(did, cursor)`` with the cursor of the read before, one
source for all organisations (its DID documents cached, as in a worker).

- idle: nothing changed. Target: 1 request per organisation (getLatestCommit).
- news: 10 % of the accounts have one new post: 3 requests for those (the revision
  and one page per collection), exactly the new posts read.
- deletes: 10 % delete a bridged post: each reported once in ``deleted``.

CPU is ``time.thread_time`` of the polling thread only.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

from bench._common import Verdicts, banner, parse_args, quiet_logs, summary, table  # noqa: E402
from bridge.sources.bluesky import POST, REPOST, BlueskySource, tid_at  # noqa: E402

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CID = "bafyreigw3ksdeosfosgvvqyiyrrcidp3au3bszbucjt6z2suvsua2ctbcm"


class Repo:
    """One account's records, newest first per collection, and its revision."""

    def __init__(self, did: str, handle: str) -> None:
        self.did, self.handle = did, handle
        self.records: dict[str, list[str]] = {POST: [], REPOST: []}
        self.texts: dict[str, str] = {}
        self.rev = ""

    def post(self, rkey: str, text: str) -> None:
        self.records[POST].insert(0, rkey)
        self.texts[rkey] = text
        self.rev = rkey

    def delete(self, rkey: str, rev: str) -> None:
        self.records[POST].remove(rkey)
        self.rev = rev


class Standin:
    """The PLC directory and the PDS of every account, on one loopback port."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path.startswith("/did:plc:"):  # the PLC directory's DID document (did:plc spec v0.1)
            repo = self.repos.get(path[1:])
            if repo is None:
                return 404, {"message": f"DID not registered: {path[1:]}"}
            return 200, {"@context": ["https://www.w3.org/ns/did/v1"], "id": repo.did,
                         "alsoKnownAs": [f"at://{repo.handle}"], "verificationMethod": [],
                         "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                      "serviceEndpoint": self.url}]}
        repo = self.repos.get(query.get("did") or query.get("repo") or "")
        if repo is None:
            return 400, {"error": "RepoNotFound", "message": "Could not find repo"}
        if path == "/xrpc/com.atproto.sync.getLatestCommit":
            return 200, {"cid": CID, "rev": repo.rev}
        if path == "/xrpc/com.atproto.repo.listRecords":
            keys = repo.records.get(query.get("collection", ""), [])
            if query.get("cursor"):
                keys = [k for k in keys if k < query["cursor"]]
            page = keys[: int(query.get("limit", "50"))]
            records = [{"uri": f"at://{repo.did}/{POST}/{k}", "cid": CID,
                        "value": {"$type": POST, "text": repo.texts[k], "createdAt": "2026-12-01T12:00:00.000Z",
                                  "langs": ["de"]}} for k in page]
            return 200, {"records": records, **({"cursor": page[-1]} if page else {})}
        return 501, {"error": "MethodNotImplemented", "message": path}


def _handler(standin: Standin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the PDS
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, body = standin.answer(parts.path, query)
            data = json.dumps(body).encode()
            with standin.lock:
                standin.requests += 1
                standin.bytes += len(data)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def did_of(i: int) -> str:
    return "did:plc:" + "".join("abcdefghij"[int(c)] for c in f"{i:024d}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    banner("bluesky_poll", args.quick)
    quiet_logs()
    count = 50 if args.quick else 1000
    verdicts = Verdicts(quick=args.quick)
    standin = Standin()
    source = BlueskySource(plc_url=standin.url, appview_url=standin.url, timeout=10)
    clock = iter(range(1, 10**9))

    def tid() -> str:
        return tid_at(T0 + timedelta(microseconds=next(clock)))

    try:
        dids = [did_of(i) for i in range(count)]
        for i, did in enumerate(dids):
            repo = standin.repos[did] = Repo(did, f"coop{i}.bsky.test")
            repo.post(tid(), "An older post")
            repo.post(tid(), "Another older post")
        cursors = {did: source.start_cursor(did)[0] for did in dids}  # linking: DID documents read and cached
        # One post each after linking, read once, so each account has a bridged post to delete later.
        for did in dids:
            standin.repos[did].post(tid(), "Bridged post")
        rows: list[dict[str, Any]] = []

        def cycle(label: str) -> tuple[int, int, int]:
            requests0, bytes0 = standin.requests, standin.bytes
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            found = deleted = 0
            for did in dids:
                read = source.read_new(did, cursors[did])
                found += len(read.posts)
                deleted += len(read.deleted)
                if read.cursor:
                    cursors[did] = read.cursor
            cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
            requests, received = standin.requests - requests0, standin.bytes - bytes0
            rows.append({"cycle": label, "orgs": count, "requests": requests, "bytes": received,
                         "new_posts": found, "deleted": deleted, "cpu_ms_per_org": round(cpu / count * 1000, 3),
                         "wall_s": round(wall, 2)})
            return requests, found, deleted

        _, found, _ = cycle("first posts")
        verdicts.check("first read: each account's new post", found == count, f"{found} of {count}")
        requests, found, _ = cycle("idle")
        verdicts.check("idle: 1 request per organisation", requests == count, f"{requests / count:g}")
        verdicts.check("idle: nothing new", found == 0, str(found))
        changed = dids[::10]
        for did in changed:
            standin.repos[did].post(tid(), "News")
        requests, found, _ = cycle("10% new")
        verdicts.check("news: 1 request per idle organisation, 3 per changed one",
                       requests == count + 2 * len(changed), f"{requests} for {len(changed)} changed")
        verdicts.check("news: exactly the new posts read", found == len(changed), f"{found} of {len(changed)}")
        for did in changed:
            repo = standin.repos[did]
            repo.delete(repo.records[POST][1], tid())  # the bridged post, under the news
        requests, found, deleted = cycle("10% deleted")
        verdicts.check("deletes: each reported once", deleted == len(changed), f"{deleted} of {len(changed)}")
        requests, found, deleted = cycle("idle again")
        verdicts.check("idle after deletes: 1 request per organisation, nothing reported",
                       requests == count and deleted == 0, f"{requests / count:g}, {deleted}")
        table(rows)
        idle = rows[1]
        summary("bluesky_poll", verdicts, f"{count} accounts; idle {idle['requests'] / count:g} request and"
                f" {idle['bytes'] / count:.0f} bytes per organisation, CPU {idle['cpu_ms_per_org']} ms per organisation")
    finally:
        source.close()
        standin.close()
    return 0 if args.quick or all(ok for _, ok, _ in verdicts.results) else 1


if __name__ == "__main__":
    sys.exit(main())
