"""Test hook for the crash-safety tests: die with SIGKILL at a named point.

It lives apart from the pipeline so the ledger can name a point inside its own
transactions (between writing the fetched posts and moving the cursor) without
importing the pipeline.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here with SIGKILL when ``BRIDGE_TEST_CRASH_AT`` names this point.

    The crash-safety tests run the real poller in a subprocess and kill it at
    exactly these points; nothing else reads the variable.
    """
    if os.environ.get("BRIDGE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
