"""The registry's contract (contract 4): how a target and its renderer are made from a kind."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bridge import registry
from bridge.config import Config
from bridge.convert.engine import convert
from bridge.errors import ConfigError
from tests.mastodon_server import MastodonServer

KEYWORDS = ["base_url", "credentials", "account_id", "handle", "session", "save_credentials"]


def test_every_target_factory_takes_exactly_the_contracts_keywords() -> None:
    for kind, factory in registry.TARGETS.items():
        params = inspect.signature(factory).parameters
        assert list(params)[1:] == KEYWORDS, kind
        assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in KEYWORDS), kind


def test_make_target_makes_a_mastodon_target_that_talks_to_its_instance(mastodon: MastodonServer) -> None:
    token = mastodon.create_account("registry1")
    saved: list[str] = []
    target = registry.make_target("mastodon", Config(path=None, database=Path("/nonexistent/ledger.db")), base_url=mastodon.base_url, credentials=token,
                                  account_id="1", handle="registry1", save_credentials=saved.append)
    try:
        assert target.kind == "mastodon" and target.limits().max_characters > 0
    finally:
        target.close()
    assert saved == []  # a Mastodon token never changes


def test_the_mastodon_renderer_is_the_engines_convert_and_an_unknown_kind_is_named() -> None:
    assert registry.renderer("mastodon") is convert
    with pytest.raises(ConfigError, match="no renderer for target kind 'nowhere'"):
        registry.renderer("nowhere")
    with pytest.raises(ConfigError, match="unknown target kind 'nowhere'"):
        registry.make_target("nowhere", Config(path=None, database=Path("/nonexistent/ledger.db")), base_url="http://127.0.0.1:9", credentials="t")
