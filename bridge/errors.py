"""One small error hierarchy, so callers decide by kind, not by library.

The split that matters is transient (try again later, nothing is wrong with the
post) versus permanent (this post can never go as it is) versus auth (the
organisation must be relinked). Library exceptions are mapped to these at the
edges (sources, targets); nothing above the edges sees a tweepy or Mastodon.py
exception.
"""

from __future__ import annotations

from datetime import datetime


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Configuration or command-line input is wrong; names the file, key and expectation."""


class TransientError(BridgeError):
    """Retry later: timeouts, connection errors, 5xx, 429.

    ``retry_at`` is set when the server told us when to come back (a rate-limit
    reset); the caller defers until then instead of guessing.
    """

    def __init__(self, message: str, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class RateLimited(TransientError):
    """A 429 with a known reset time (X: epoch seconds, Mastodon: ISO-8601)."""


class PermanentError(BridgeError):
    """This post can never go as it is: 422, unsupported or oversized media, parent gone."""


class AuthError(BridgeError):
    """The token was refused (401/403): the organisation needs relinking."""


class XAuthError(AuthError):
    """X refused the app's bearer token: the configuration must change, relinking cannot help.

    An AuthError still, so code that catches AuthError for the X side goes on working;
    the CLI tells the two apart to give the right advice.
    """


class LedgerError(BridgeError):
    """The ledger could not be written (disk full, I/O error): nothing was recorded by that step."""


class SourceError(BridgeError):
    """The source (X API response or archive file) is malformed; names the place."""


class SourceGone(SourceError):
    """The source account is no longer where it was linked (a feed answering 404 or 410).

    The pipeline puts the organisation's source into state ``needs_relink`` with this
    reason (``bridge status`` shows it) and keeps polling: a site that comes back
    clears it. Nothing else stops.
    """
