"""Start and drive a real mastodon-mock server on loopback for tests and benchmarks.

The server is a separate process (``mastodon_mock serve --in-memory``), so the
bridge talks real HTTP to it exactly as to geno.social.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from geno_bridge_standins.mastodon import free_port, start_mastodon_mock
from geno_bridge_standins.process import stop_process

__all__ = ["MastodonServer", "basic_auth", "free_port", "start_mastodon"]


@dataclass
class MastodonServer:
    """A running mastodon-mock; ``base_url`` is ``http://127.0.0.1:PORT``."""

    base_url: str
    process: subprocess.Popen[bytes]
    _client: httpx.Client = field(repr=False, default_factory=lambda: httpx.Client(timeout=10))

    # -- accounts and tokens ------------------------------------------------
    def create_account(self, username: str) -> str:
        """Create a local account and return an access token for it (mock-only shortcut)."""
        r = self._client.post(f"{self.base_url}/api/v1/_mock/dev_user", json={"username": username})
        r.raise_for_status()
        return str(r.json()["access_token"])

    def authorize_code(self, client_id: str, username: str, scope: str, state: str = "") -> str:
        """Act as the volunteer who clicks "Authorize" in the browser: returns the OOB code."""
        r = self._client.post(
            f"{self.base_url}/oauth/authorize",
            data={
                "username": username,
                "client_id": client_id,
                "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
                "scope": scope,
                "state": state,
            },
        )
        r.raise_for_status()
        text = r.text
        marker = "Authorization code: "
        return text[text.index(marker) + len(marker) :].split("<", 1)[0].strip()

    # -- reading what arrived ---------------------------------------------
    def statuses(self, token: str, account_id: str | None = None, limit: int = 40) -> list[dict[str, Any]]:
        """All statuses of the token's account, newest first (follows pagination)."""
        headers = {"Authorization": f"Bearer {token}"}
        if account_id is None:
            me = self._client.get(f"{self.base_url}/api/v1/accounts/verify_credentials", headers=headers)
            me.raise_for_status()
            account_id = str(me.json()["id"])
        out: list[dict[str, Any]] = []
        max_id: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if max_id:
                params["max_id"] = max_id
            r = self._client.get(f"{self.base_url}/api/v1/accounts/{account_id}/statuses", headers=headers, params=params)
            r.raise_for_status()
            page = r.json()
            if not page:
                return out
            out.extend(page)
            max_id = str(page[-1]["id"])

    # -- fault injection (mastodon-mock's control plane) --------------------
    def add_fault(self, rule: dict[str, Any]) -> str:
        """Add a fault rule, e.g. ``{"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
        "effect": {"type": "status", "status": 503}, "count": 2}``. Returns its id."""
        r = self._client.post(f"{self.base_url}/api/v1/_mock/faults", json=rule)
        r.raise_for_status()
        return str(r.json()["id"])

    def clear_faults(self) -> None:
        self._client.delete(f"{self.base_url}/api/v1/_mock/faults").raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        r = self._client.get(f"{self.base_url}/api/v1/_mock/faults")
        r.raise_for_status()
        return list(r.json())

    def stop(self, grace: float = 10) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` seconds. True when the server exited on SIGTERM.

        uvicorn's graceful shutdown waits for every request still being served, so a
        False here means some request was still in flight ``grace`` seconds later
        (e.g. a ``timeout`` fault, which holds its request at least 30 s).
        """
        self._client.close()
        return stop_process(self.process, grace) is not None


def start_mastodon(port: int | None = None, log_path: Path | None = None, timeout: float = 30.0) -> MastodonServer:
    """Start mastodon-mock (the same launcher the demo uses) and wrap it for tests."""
    proc, base_url = start_mastodon_mock(log_path, port=port, timeout=timeout)
    return MastodonServer(base_url=base_url, process=proc)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
