"""Configuration: every bad input gives a ConfigError that names the file, the key and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.config import effective, find_config, load_config, parse_config
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    p = tmp_path / "config.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p, environ=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text, env)
    message = str(exc.value)
    assert str(tmp_path / "config.yaml") in message or "config.yaml" in message
    return message


def test_example_config_loads_and_documents_every_key() -> None:
    config = load_config(ROOT / "config.example.yaml", environ={"X_BEARER_TOKEN": "secret-token-value"})
    assert config.x.bearer_token == "secret-token-value"
    assert config.mastodon.default_instance == "https://geno.social"
    assert config.x.poll_interval == 300 and config.x.max_poll_interval == 3600
    assert config.policy_for("wohnen-eg").retweets == "link"
    assert config.policy_for("wohnen-eg").visibility.backfill == "unlisted"  # inherited from defaults
    assert ("hostsharing", "hostsharing@geno.social") in config.defaults.mention_map
    text = (ROOT / "config.example.yaml").read_text()
    shown = effective(config)

    def keys(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if k in ("config_file", "organisations") or prefix.endswith("map."):
                continue
            out.append(k)
            if isinstance(v, dict) and k != "map":
                out.extend(keys(v, prefix + k + "."))
        return out

    for key in keys(shown):
        assert f"{key}:" in text, f"config.example.yaml does not document {key}"


def test_minimal_config_uses_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "database: ledger.db\n")
    assert config.database == (tmp_path / "ledger.db").resolve()
    assert config.x.api_base_url == "https://api.x.com"
    assert config.mastodon.default_instance == "https://geno.social"
    assert config.daemon.concurrency == 4
    assert config.defaults.mentions_unmapped == "plain"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  pol_interval: 60\n")
    assert "x.pol_interval" in msg and "unknown key" in msg and "did you mean 'poll_interval'" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nmastadon: {}\n")
    assert "mastadon" in msg and "did you mean 'mastodon'" in msg


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\ndaemon:\n  concurrency: many\n")
    assert "daemon.concurrency" in msg and "expected a whole number" in msg and "'many'" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  media_hosts: pbs.twimg.com\n")
    assert "x.media_hosts" in msg and "expected a list of strings" in msg
    msg = error(tmp_path, "database: l.db\ndefaults:\n  retweets: sometimes\n")
    assert "defaults.retweets" in msg and "auto, boost, link, skip" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: soon\n")
    assert "x.poll_interval" in msg and "duration" in msg
    msg = error(tmp_path, "database: l.db\norganisations:\n  coop:\n    visibility:\n      original: everyone\n")
    assert "organisations.coop.visibility.original" in msg and "public, unlisted, private, direct" in msg


def test_missing_required_value(tmp_path: Path) -> None:
    msg = error(tmp_path, "x:\n  poll_interval: 60\n")
    assert "database" in msg and "missing required value" in msg


def test_unset_environment_variable(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: ${NOT_SET_ANYWHERE}\n")
    assert "x.bearer_token" in msg and "${NOT_SET_ANYWHERE}" in msg and "not set" in msg


def test_environment_variables_expand(tmp_path: Path) -> None:
    config = load(tmp_path, "database: ${STATE}/l.db\nx:\n  bearer_token: ${TOK}\n", {"STATE": str(tmp_path / "s"), "TOK": "abc"})
    assert config.database == tmp_path / "s" / "l.db"
    assert config.x.bearer_token == "abc"


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "bearer").write_text("from-a-file\n")
    config = load(tmp_path, f"database: l.db\nx:\n  bearer_token_file: {tmp_path / 'bearer'}\n")
    assert config.x.bearer_token == "from-a-file"


def test_unreadable_secret_file(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token_file: /nonexistent/credential\n")
    assert "x.bearer_token_file" in msg and "/nonexistent/credential" in msg and "cannot read" in msg


def test_secret_inline_and_file_conflict(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  bearer_token: a\n  bearer_token_file: b\n")
    assert "not both" in msg


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: [60\n  timeout: 3\n")
    assert "malformed YAML" in msg and "line " in msg and "column " in msg


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: a.db\ndatabase: b.db\n")
    assert "duplicate key 'database'" in msg and "line 2" in msg


def test_bad_urls_and_ranges(tmp_path: Path) -> None:
    msg = error(tmp_path, "database: l.db\nmastodon:\n  default_instance: geno.social\n")
    assert "mastodon.default_instance" in msg and "URL" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  poll_interval: 10m\n  max_poll_interval: 5m\n")
    assert "x.max_poll_interval" in msg
    msg = error(tmp_path, "database: l.db\ndaemon:\n  concurrency: 0\n")
    assert "daemon.concurrency" in msg and "at least 1" in msg
    msg = error(tmp_path, "database: l.db\ndefaults:\n  mentions:\n    map:\n      someone: not-an-account\n")
    assert "defaults.mentions.map.someone" in msg and "user@instance" in msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in msg


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(exc.value) and "not found" in str(exc.value)


def test_config_is_found_via_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", str(tmp_path / "env.yaml"))
    assert find_config(None) == tmp_path / "env.yaml"
    assert find_config("given.yaml") == Path("given.yaml")
    monkeypatch.delenv("BRIDGE_CONFIG")
    assert find_config(None) == Path("config.yaml")


def test_per_org_overrides_inherit_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "database: l.db\ndefaults:\n  replies: none\n  mentions:\n    map: {a: a@x.social}\n"
        "organisations:\n  coop:\n    mentions:\n      map: {B: b@y.social}\n",
    )
    p = config.policy_for("coop")
    assert p.replies == "none"
    assert dict(p.mention_map) == {"a": "a@x.social", "b": "b@y.social"}
    assert config.policy_for("other") == config.defaults


def test_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\n")
    with pytest.raises(AttributeError):
        config.database = Path("x")  # type: ignore[misc]


def test_effective_masks_secrets(tmp_path: Path) -> None:
    config = load(tmp_path, "database: l.db\nx:\n  bearer_token: AAAAsupersecret\n")
    assert "AAAAsupersecret" not in repr(effective(config))
    assert "AAAAsupersecret" not in repr(config)
    assert os.fspath(config.database).endswith("l.db")
    assert parse_config("database: x.db", tmp_path / "c.yaml", {}).database.name == "x.db"


def test_thread_cap_and_media_deadline_have_defaults_and_are_checked(tmp_path: Path) -> None:
    """Issue 12 item 5: max_thread_parts (a policy key) and x.media_download_deadline."""
    config = load(tmp_path, "database: l.db\nx:\n  media_download_deadline: 2m\norganisations:\n  a:\n    max_thread_parts: 3\n")
    assert config.defaults.max_thread_parts == 10 and config.policy_for("a").max_thread_parts == 3
    assert config.x.media_download_deadline == 120 and load(tmp_path, "database: l.db\n").x.media_download_deadline == 600
    msg = error(tmp_path, "database: l.db\ndefaults:\n  max_thread_parts: 0\n")
    assert "defaults.max_thread_parts" in msg and "at least 1" in msg
    msg = error(tmp_path, "database: l.db\nx:\n  media_download_deadline: soon\n")
    assert "x.media_download_deadline" in msg
