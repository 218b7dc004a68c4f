"""Logging with structlog: readable on a terminal, JSON lines for journald and containers.

Every event passes ``mask_secrets`` last-but-one, so a token that slips into an
event (an exception text, a URL with ``access_token=``) is masked before it is
written anywhere.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any, TextIO

import structlog

# Keys whose values are always secret, whatever they look like.
SECRET_KEYS = re.compile(r"(token|secret|password|authorization|bearer|code_verifier|client_secret)", re.I)

# Values that look like credentials inside free text.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/%=-]{8,}"),
    re.compile(r"(?i)((?:access_token|client_secret|bearer_token|token|code|password)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9._~+/%-]{8,}"),
    # X app bearer tokens: long runs starting with many A's and containing %
    re.compile(r"AAAAAAAAA[A-Za-z0-9%._-]{20,}"),
]
MASK = "***"


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask known secrets and anything shaped like a credential in ``text``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, MASK)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class SecretMasker:
    """structlog processor: masks secret-named keys and credential-shaped text in every value.

    ``register`` adds known secret values (the X bearer token, organisations'
    Mastodon tokens) so they are masked even where they do not look like one.

    The daemon registers every organisation's token: 10,000 at full scale. One
    ``str.replace`` per secret and value made a log line cost 3.4 ms there
    (bench/poll_scale.py, issue 18), more than an idle poll itself; so known
    secrets are found by one pass over the text that looks up each position's
    first four characters in an index of the secrets.
    """

    PREFIX = 4  # secrets shorter than this are not masked (as mask_text)

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._index: dict[str, list[str]] = {}  # first PREFIX characters -> secrets, longest first
        self._shortest = 0  # no text shorter than the shortest indexed secret can hold one

    def register(self, *secrets: str | None) -> None:
        new = {s for s in secrets if s and s not in self._known}
        if not new:
            return  # the common case (a token registered again): no sorting, no copying
        self._known |= new
        touched: set[str] = set()
        for s in new:
            if len(s) >= self.PREFIX:
                self._index.setdefault(s[: self.PREFIX], []).append(s)
                touched.add(s[: self.PREFIX])
                self._shortest = min(self._shortest or len(s), len(s))
        # Each bucket sorted once: sorting at every insertion was quadratic where many secrets share a prefix.
        for prefix in touched:
            bucket = self._index[prefix]
            bucket.sort(key=len, reverse=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The registered secrets, longest first."""
        return tuple(sorted(self._known, key=len, reverse=True))

    def mask(self, text: str) -> str:
        """``text`` with every registered secret (longest first at each place) and credential shape masked."""
        index = self._index
        if index and len(text) >= self._shortest:
            parts: list[str] = []
            start = i = 0
            end = len(text) - self.PREFIX + 1
            while i < end:
                found = index.get(text[i : i + self.PREFIX])
                if found:
                    for s in found:
                        if text.startswith(s, i):
                            parts.append(text[start:i])
                            parts.append(MASK)
                            i = start = i + len(s)
                            break
                    else:
                        i += 1
                else:
                    i += 1
            if parts:
                parts.append(text[start:])
                text = "".join(parts)
        return mask_text(text)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: (MASK if isinstance(k, str) and _secret_key(k) and v else self._clean(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, BaseException):
            return self.mask(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            value = event[key]
            if _secret_key(key) and value and key not in ("event",):
                event[key] = MASK
            else:
                event[key] = self._clean(value)
        return event


@lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """Whether a field name says its value is secret (the same few names recur in every line)."""
    return SECRET_KEYS.search(key) is not None


masker = SecretMasker()


def configure(fmt: str = "auto", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """``fmt``: auto (console on a TTY, else JSON), console or json."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        masker,
        structlog.processors.TimeStamper(fmt="iso", utc=True),  # after masking: a time holds no secret
    ]
    if use_json:
        processors.append(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "bridge") -> Any:
    return structlog.get_logger(name)
