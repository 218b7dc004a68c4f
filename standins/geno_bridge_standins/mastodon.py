"""Start mastodon-mock (a real Mastodon API server) on loopback: the demo's and the tests' Mastodon.

One launcher for both, so the demo shows exactly the server the tests talk to.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


class StandinError(RuntimeError):
    """mastodon-mock is missing, exited, or did not answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mock_command() -> list[str]:
    exe = shutil.which("mastodon_mock", path=str(Path(sys.executable).parent)) or shutil.which("mastodon_mock")
    if exe is None:
        raise StandinError(
            "mastodon-mock, the local Mastodon stand-in, is not installed: pip install -e ./standins"
            " in a clone of geno-bridge (python3 dev.py demo and python3 dev.py test install it)"
        )
    return [exe]


def start_mastodon_mock(
    log_path: Path | None = None, port: int | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``mastodon_mock serve --in-memory`` and wait until ``/api/v2/instance`` answers.

    ``--domain localhost`` keeps account handles free of the port (``@name@localhost``).
    Returns the process and its base URL.
    """
    port = port or free_port()
    out = log_path.open("wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*mock_command(), "serve", "--in-memory", "--host", "127.0.0.1", "--port", str(port),
         "--domain", "localhost", "--log-level", "warning"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StandinError(f"mastodon-mock exited with {proc.returncode} before answering (log: {log_path})")
        try:
            if httpx.get(f"{base_url}/api/v2/instance", timeout=1).status_code == 200:
                return proc, base_url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise StandinError(f"mastodon-mock did not answer on {base_url} within {timeout:g} s")
        time.sleep(0.05)  # readiness of another process: there is no event to wait on, only its port
