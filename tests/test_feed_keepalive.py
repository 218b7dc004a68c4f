"""An idle feed poll keeps its connection to the site (issue 18): the 304 was closed unread, so every idle poll
of a feed opened a new connection (a TLS handshake each on a real site) where one kept-alive one serves them all."""

from __future__ import annotations

from bridge.sources.feed import FeedSource
from tests.feed_server import FEEDS, FeedServer


def test_idle_polls_of_many_feeds_on_one_site_share_one_connection(feed_server: FeedServer) -> None:
    body = (FEEDS / "hugo.xml").read_text()
    urls = [feed_server.serve(f"/org{n}/index.xml", body) for n in range(3)]
    source = FeedSource()
    try:
        cursors = {u: source.start_cursor(u)[0] for u in urls}
        before = len(feed_server.hits)
        for _ in range(2):
            for u in urls:
                assert source.read_new(u, cursors[u]).posts == []
    finally:
        source.close()
    idle = feed_server.hits[before:]
    assert [h.status for h in idle] == [304] * 6
    assert len({h.client_port for h in idle}) == 1  # one connection for six idle polls
