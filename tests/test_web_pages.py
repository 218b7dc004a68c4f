"""What the organisation's page shows, as data (no browser): the browser tests are tests/test_web_*.py."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from bridge.config import load_config
from bridge.ledger import Ledger, OrgRecord, SourceAccount
from bridge.web.pages import org_page

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_the_org_page_names_a_bluesky_source_by_its_handle_and_a_feed_by_its_url_and_title(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA\n")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.save_org(OrgRecord("coop", "100", "coop_x", "https://geno.social", "9", "coop", "u", token="t"), NOW)
        ledger.add_source(SourceAccount("coop", "bluesky", "bluesky", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                                        "coop.bsky.social"), NOW)
        ledger.add_source(SourceAccount("coop", "feed", "feed", "https://coop.example/feed.xml", "Coop news"), NOW)
        page = org_page(load_config(config_path), ledger, "coop", None)
    assert page is not None
    assert sorted(page.sources) == ["X @coop_x", "bluesky @coop.bsky.social", "feed https://coop.example/feed.xml (Coop news)"]


def test_plain_reasons_match_status_codes_only_as_whole_numbers() -> None:
    from bridge.web.pages import plain_reason

    assert plain_reason("HTTP 401 unauthorized") == "plain_auth"
    assert plain_reason("mastodon at http://127.0.0.1:40113: 422 Validation failed") == "plain_refused"
    assert plain_reason("post 1812403 could not be read") == "plain_other"  # 403 inside an id is no status code
    assert plain_reason("503 Service Unavailable") == "plain_unreachable"
