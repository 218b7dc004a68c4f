"""Stopping a stand-in's process: the one way the stand-ins, the tests and the demo end a server they started."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code when it ended by itself (or had already
    ended), None when it had to be killed (something was still in flight ``grace`` seconds later)."""
    if process.poll() is not None:
        return process.returncode
    process.terminate()
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None
