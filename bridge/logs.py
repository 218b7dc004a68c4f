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
    """

    def __init__(self) -> None:
        self.secrets: tuple[str, ...] = ()

    def register(self, *secrets: str | None) -> None:
        self.secrets = tuple(sorted({*self.secrets, *(s for s in secrets if s)}, key=len, reverse=True))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_text(value, self.secrets)
        if isinstance(value, dict):
            return {k: (MASK if isinstance(k, str) and SECRET_KEYS.search(k) and v else self._clean(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, BaseException):
            return mask_text(f"{type(value).__name__}: {value}", self.secrets)
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            value = event[key]
            if SECRET_KEYS.search(key) and value and key not in ("event",):
                event[key] = MASK
            else:
                event[key] = self._clean(value)
        return event


masker = SecretMasker()


def configure(fmt: str = "auto", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """``fmt``: auto (console on a TTY, else JSON), console or json."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        masker,
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
