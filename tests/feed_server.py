"""A website on loopback that serves feeds as real sites do, and fails as real sites fail.

Tests talk real HTTP to it (never a patched client). It serves files from
tests/data/feeds/ (or bytes a test sets), answers conditional requests with 304
(ETag/If-None-Match, Last-Modified/If-Modified-Since, RFC 9110 §13), counts
requests and body bytes, and can be told to fail a path: 404, 410, a permanent
redirect, malformed XML, an HTML page, an oversize body, a gzip bomb, a wrong
charset.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FEEDS = Path(__file__).resolve().parent / "data" / "feeds"
TYPES = {".xml": "application/rss+xml", ".rss": "application/rss+xml", ".json": "application/feed+json",
         ".html": "text/html; charset=utf-8"}


@dataclass
class Page:
    """What one path answers."""

    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: bool = True  # send an ETag (and honour If-None-Match)
    last_modified: datetime | None = field(default_factory=lambda: datetime(2026, 12, 1, tzinfo=timezone.utc))
    headers: dict[str, str] = field(default_factory=dict)
    raw_encoding: str | None = None  # body is already encoded with this Content-Encoding


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that closed its kept-alive connection, or stopped reading at a size cap, is not an error."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Hit:
    path: str
    status: int
    body_bytes: int
    headers: dict[str, str]
    client_port: int = 0  # one per TCP connection: shows whether a client keeps its connection alive


class FeedServer:
    """Pages by path; ``hits`` records every request with its status and body bytes sent."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        server = self
        self.httpd = _Server(("127.0.0.1", 0), _handler(server))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    # -- what to serve
    def serve(self, path: str, body: bytes | str, **kw: object) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.pages[path] = Page(data, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def serve_file(self, name: str, path: str | None = None, **kw: object) -> str:
        """A fixture of tests/data/feeds at ``path`` (default /feeds/NAME), with its usual type."""
        file = FEEDS / name
        kw.setdefault("content_type", TYPES.get(file.suffix, "application/xml"))
        return self.serve(path or f"/feeds/{name}", file.read_bytes(), **kw)

    def fault(self, path: str, kind: str, *, to: str = "", size: int = 0) -> None:
        """Make ``path`` fail: "404", "410", "moved" (301 to ``to``), "malformed", "html",
        "oversize" (``size`` bytes of valid-looking XML), "gzip_bomb" (``size`` bytes of zeros
        gzipped), "wrong_charset" (declared UTF-8, sent as Latin-1)."""
        if kind in ("404", "410"):
            self.pages[path] = Page(b"<html><body>gone</body></html>", "text/html", status=int(kind), etag=False,
                                    last_modified=None)
        elif kind == "moved":
            self.pages[path] = Page(b"", "text/html", status=301, etag=False, last_modified=None,
                                    headers={"Location": to})
        elif kind == "malformed":
            self.pages[path] = Page(b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>Broken</title>\n'
                                    b"<item><title>A &amp; B</title><link>http://x/1</link>\n<item></channel></rss>")
        elif kind == "html":
            self.pages[path] = Page((FEEDS / "homepage.html").read_bytes().replace(b'rel="alternate"', b'rel="x"'),
                                    "text/html; charset=utf-8")
        elif kind == "oversize":
            item = b"<item><title>padding</title><description>" + b"x" * 1000 + b"</description></item>\n"
            body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>\n'
            body += item * (size // len(item) + 1) + b"</channel></rss>"
            self.pages[path] = Page(body)
        elif kind == "gzip_bomb":
            self.pages[path] = Page(gzip.compress(b"\0" * size, compresslevel=9), raw_encoding="gzip")
        elif kind == "wrong_charset":
            text = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Café</title>'
                    '<item><guid>c1</guid><title>Crème brûlée</title><link>http://example.coop/c1</link>'
                    "</item></channel></rss>")
            self.pages[path] = Page(text.encode("latin-1"), "application/rss+xml; charset=utf-8")
        else:
            raise ValueError(f"unknown fault {kind!r}")

    # -- what the tests read
    def requests_to(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def body_bytes(self, path: str | None = None) -> int:
        with self._lock:
            return sum(h.body_bytes for h in self.hits if path is None or h.path == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            page = server.pages.get(path)
            if page is None:
                return self._send(path, headers, 404, {"Content-Type": "text/plain"}, b"not found")
            out = {"Content-Type": page.content_type, **page.headers}
            if page.status == 200:
                tag = _etag(page.body) if page.etag else None
                if tag:
                    out["ETag"] = tag
                if page.last_modified:
                    out["Last-Modified"] = format_datetime(page.last_modified, usegmt=True)
                if _not_modified(headers, tag, page.last_modified):
                    return self._send(path, headers, 304, {k: v for k, v in out.items() if k != "Content-Type"}, b"")
            if page.raw_encoding:
                out["Content-Encoding"] = page.raw_encoding
            self._send(path, headers, page.status, out, page.body)

        def _send(self, path: str, req: dict[str, str], status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            # Recorded before the body goes out, so a test that got its answer always sees its hit.
            server._record(Hit(path, status, len(body), req, self.client_address[1]))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (a size cap)

    return Handler


def _not_modified(headers: dict[str, str], tag: str | None, modified: datetime | None) -> bool:
    """RFC 9110 §13.1.2-3: If-None-Match wins over If-Modified-Since when both are sent."""
    if "if-none-match" in headers:
        return tag is not None and tag in [t.strip() for t in headers["if-none-match"].split(",")]
    if "if-modified-since" in headers and modified is not None:
        try:
            return modified <= parsedate_to_datetime(headers["if-modified-since"])
        except (TypeError, ValueError):
            return False
    return False


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A fresh loopback website for one test."""
    server = FeedServer()
    yield server
    server.close()
