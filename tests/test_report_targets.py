"""`bridge status`, `bridge orgs` and `bridge retry` with several sources and targets (issues 14-16):
each source and each target of an organisation shown with its state and queue; retry per target."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from bridge.ledger import FetchedPost, Ledger, OrgRecord, SourceAccount, TargetAccount

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
BLUESKY = TargetAccount("coop", "bluesky", "bluesky", "https://pds.example", "did:plc:coop", "coop.bsky.social",
                        "https://bsky.app/profile/coop.bsky.social", "session")


def ledger_with_two_targets(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA-very-secret-bearer\n")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.save_org(OrgRecord("coop", "100", "coop_x", "https://geno.social", "9", "coop", "u", token="t"), NOW)
        ledger.set_cursor("coop", "1", NOW)
        ledger.add_source(SourceAccount("coop", "feed", "feed", "https://coop.example/feed.xml", "Coop news",
                                        cursor="c", state="needs_relink"), NOW)
        ledger.add_target(BLUESKY, NOW)
        ledger.record_fetched("coop", [FetchedPost(n, NOW, {"id": n}) for n in ("2", "3")], cursor="3", now=NOW)
        ledger.record_delivery("coop", "2", 0, "status", "502", "https://geno.social/@coop/502", NOW)
        ledger.finish("coop", "2", "delivered", NOW)
        ledger.finish("coop", "3", "failed", NOW, "422: too long")
        ledger.finish("coop", "2", "failed", NOW, "400: blob too big", target="bluesky")
        ledger.finish("coop", "3", "failed", NOW, "400: blob too big", target="bluesky")
        ledger.update_target("coop", NOW, target="bluesky", state="needs_relink", state_reason="app password revoked")
    return config


def test_status_shows_each_source_and_each_target_with_its_state_and_queue(tmp_path: Path) -> None:
    config = ledger_with_two_targets(tmp_path)
    r = CliRunner().invoke(main, ["--config", str(config), "status", "coop"])
    assert r.exit_code == 0, r.output
    assert "X @coop_x -> bluesky coop.bsky.social (needs_relink), @coop@geno.social\n" in r.output
    assert "feed https://coop.example/feed.xml (Coop news) ->" in r.output and "source needs_relink" in r.output
    assert "  target mastodon: @coop@geno.social\n    pending 0   delivered 1   skipped 0   failed 1" in r.output
    assert ("  target bluesky: bluesky coop.bsky.social   needs_relink (app password revoked)\n"
            "    pending 0   delivered 0   skipped 0   failed 2\n    failed 2: 400: blob too big") in r.output
    data = json.loads(CliRunner().invoke(main, ["--config", str(config), "status", "--json"]).output)
    (org,) = data["organisations"]
    assert [(s["name"], s["kind"], s["state"]) for s in org["sources"]] == [("feed", "feed", "needs_relink"),
                                                                           ("x", "x", "active")]
    targets = {t["name"]: t for t in org["targets"]}
    assert targets["bluesky"]["state"] == "needs_relink" and targets["bluesky"]["counts"]["failed"] == 2
    assert targets["mastodon"]["newest_copy"]["post_id"] == "2" and targets["mastodon"]["failed"] == 1


def test_orgs_lists_every_source_and_target_and_sums_the_queue(tmp_path: Path) -> None:
    config = ledger_with_two_targets(tmp_path)
    r = CliRunner().invoke(main, ["--config", str(config), "orgs"])
    assert r.exit_code == 0, r.output
    assert "feed https://coop.example/feed.xml (needs_relink), @coop_x" in r.output
    assert "bluesky coop.bsky.social (needs_relink), @coop@geno.social" in r.output
    (row,) = json.loads(CliRunner().invoke(main, ["--config", str(config), "orgs", "--json"]).output)
    assert row["failed"] == 3 and [(t["name"], t["failed"]) for t in row["targets"]] == [("bluesky", 2),
                                                                                        ("mastodon", 1)]


def test_a_one_source_one_target_organisation_reads_as_it_always_did(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA-very-secret-bearer\n")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.save_org(OrgRecord("solo", "100", "solo_x", "https://geno.social", "9", "solo", "u", token="t"), NOW)
    r = CliRunner().invoke(main, ["--config", str(config), "status", "solo"])
    assert "\nsolo: active\n  X @solo_x -> @solo@geno.social\n  last poll: never   next poll: -\n" in r.output
    assert "  pending 0   delivered 0   skipped 0   failed 0" in r.output and "target mastodon" not in r.output
    r = CliRunner().invoke(main, ["--config", str(config), "orgs"])
    assert "solo  @solo_x  @solo@geno.social  active" in r.output


def test_a_bluesky_source_shows_its_handle_and_a_feed_its_url_and_title_on_one_short_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA-very-secret-bearer\n")
    long_title = "Neuigkeiten der\nWohnbaugenossenschaft   Sonnenhof eG aus dem Quartier am Fluss und drumherum"
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.save_org(OrgRecord("sky", "100", "sky_x", "https://geno.social", "9", "sky", "u", token="t"), NOW)
        ledger.add_source(SourceAccount("sky", "x", "bluesky", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "sky.bsky.social"), NOW)
        ledger.add_source(SourceAccount("sky", "feed", "feed", "https://sky.example/feed.xml", long_title), NOW)
        ledger.save_org(OrgRecord("bare", "101", "bare_x", "https://geno.social", "8", "bare", "u", token="t"), NOW)
        ledger.add_source(SourceAccount("bare", "x", "feed", "https://bare.example/atom", "https://bare.example/atom"), NOW)
    r = CliRunner().invoke(main, ["--config", str(config), "orgs"])
    assert r.exit_code == 0, r.output
    assert re.search(r"\nsky +feed https://sky\.example/feed\.xml, bluesky @sky\.bsky\.social +@sky@geno\.social ", r.output)
    assert re.search(r"\nbare +feed https://bare\.example/atom +@bare@geno\.social ", r.output) and "did:plc" not in r.output
    r = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert r.exit_code == 0, r.output
    assert "  bluesky @sky.bsky.social -> @sky@geno.social\n" in r.output and "did:plc" not in r.output
    assert ("  feed https://sky.example/feed.xml (Neuigkeiten der Wohnbaugenossenschaft Sonnenhof eG aus dem…)"
            " -> @sky@geno.social\n") in r.output
    assert "  feed https://bare.example/atom -> @bare@geno.social\n" in r.output  # no title: the URL once
    data = json.loads(CliRunner().invoke(main, ["--config", str(config), "status", "--json", "sky"]).output)
    assert {s["kind"]: s["account"] for s in data["organisations"][0]["sources"]}["bluesky"].startswith("did:plc:")


def test_retry_names_a_target_or_retries_on_every_target(tmp_path: Path) -> None:
    config = ledger_with_two_targets(tmp_path)
    r = CliRunner().invoke(main, ["--config", str(config), "retry", "coop", "--all-failed", "--target", "bluesky"])
    assert r.exit_code == 0 and "2 post(s) of coop queued again on bluesky" in r.output, r.output
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        assert ledger.counts("coop", target="bluesky")["pending"] == 2 and ledger.counts("coop")["failed"] == 1
    r = CliRunner().invoke(main, ["--config", str(config), "retry", "coop", "--post", "3"])
    assert r.exit_code == 0 and "1 post(s) of coop queued again;" in r.output, r.output
    r = CliRunner().invoke(main, ["--config", str(config), "retry", "coop", "--post", "2", "--target", "mastodon"])
    assert r.exit_code == 2 and "post 2 is delivered, not failed" in r.output
    r = CliRunner().invoke(main, ["--config", str(config), "retry", "coop", "--all-failed", "--target", "nowhere"])
    assert r.exit_code == 2 and "has no target 'nowhere' (its targets: bluesky, mastodon)" in r.output
