"""Test hook for the crash-safety tests: die with SIGKILL at a named point.

It lives apart from the pipeline so the ledger can name a point inside its own
transactions (between writing the fetched posts and moving the cursor) without
importing the pipeline.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here with SIGKILL when ``BRIDGE_TEST_CRASH_AT`` names this point.

    The crash-safety tests run the real poller in a subprocess and kill it at
    exactly these points; nothing else reads the variables. With
    ``BRIDGE_TEST_CRASH_AFTER=N`` it dies the Nth time the point is reached
    (a point inside a loop: the middle of a batch).
    """
    if os.environ.get("BRIDGE_TEST_CRASH_AT") == name:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= int(os.environ.get("BRIDGE_TEST_CRASH_AFTER") or 1):
            os.kill(os.getpid(), signal.SIGKILL)
