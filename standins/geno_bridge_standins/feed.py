"""A cooperative's website on loopback, serving one RSS feed with an ETag (304 when unchanged): the demo's feed."""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FeedSite:
    """``url`` is the feed; ``add`` puts a new entry on top. Serves until ``stop``."""

    def __init__(self, title: str, home: str = "https://baeckerei.example/") -> None:
        self.title, self.home = title, home
        self.items: list[str] = []
        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, guid: str, title: str, html: str, when: datetime) -> None:
        self.items.insert(0, (
            f"<item><title>{escape(title)}</title><link>{escape(guid)}</link><guid>{escape(guid)}</guid>"
            f"<pubDate>{format_datetime(when)}</pubDate><description>{escape(html)}</description></item>"))

    def body(self) -> bytes:
        return (f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(self.title)}</title>'
                f"<link>{escape(self.home)}</link><language>de</language>{''.join(self.items)}</channel></rss>").encode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(site: FeedSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            site.requests += 1
            body = site.body()
            tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", tag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
