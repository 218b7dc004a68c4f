"""`bridge web` on loopback, and a real headless Chromium to drive it (Debian's /usr/bin/chromium through Playwright).

Playwright never downloads a browser here: it is pointed at the system's chromium
(`.ci/run` installs it). axe-core (installed into .axe/ by dev.py) is injected into
each page for the accessibility check; screenshots at desktop and phone widths go
to /tmp/web-shots, outside the repository.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from bridge.cli import main
from geno_bridge_standins.process import stop_process
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer, free_port

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("BRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("BRIDGE_WEB_SHOTS", "/tmp/web-shots"))
OPERATOR_TOKEN = "operator-test-password-1"
_n = itertools.count(1)


def _missing(what: str) -> None:
    """Skipped on a newcomer's machine without the browser or axe-core; a failure under CI (like the PDS)."""
    if os.environ.get("CI"):
        pytest.fail(what, pytrace=False)
    pytest.skip(what)


@dataclass
class WebServer:
    """A running `bridge web` process and the bench it works on."""

    env: BridgeEnv
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    shots: list[Path] = field(default_factory=list)

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(main, ["--config", str(self.env.config_path), *args])

    def invite(self, name: str) -> str:
        result = self.cli("invite", name)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    def stop(self) -> None:
        stop_process(self.process)


def web_config(tmp: Path, port: int, *, secure: bool = False, rate_limit: int = 1000, extra: str = "") -> str:
    (tmp / "web-secret").write_text("test-secret-" + "k" * 32 + "\n")
    (tmp / "operator-token").write_text(OPERATOR_TOKEN + "\n")
    return (
        f"web:\n  port: {port}\n  secret_file: {tmp / 'web-secret'}\n  operator_token_file: {tmp / 'operator-token'}\n"
        f"  secure_cookies: {'true' if secure else 'false'}\n  rate_limit: {rate_limit}\n{extra}"
    )


def start_web(env: BridgeEnv, port: int, timeout: float = 30.0) -> WebServer:
    """Run `bridge web` as its own process and wait until it answers."""
    log = env.tmp / f"web-{port}.log"
    exe = Path(sys.executable).parent / "bridge"
    proc = subprocess.Popen([str(exe), "--config", str(env.config_path), "web"], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge web exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return WebServer(env, base, proc, log)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"bridge web did not answer on {base} within {timeout:g} s")
        time.sleep(0.05)  # readiness of another process: there is no event to wait on, only its port


def make_web(tmp: Path, x: FakeXServer, mastodon: MastodonServer, **kwargs: Any) -> WebServer:
    port = free_port()
    env = BridgeEnv(tmp, x, mastodon, extra_config=web_config(tmp, port, **kwargs))
    return start_web(env, port)


@pytest.fixture
def web(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[WebServer]:
    server = make_web(tmp_path, x_server, mastodon)
    try:
        yield server
    finally:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _missing(f"no chromium at {CHROMIUM}: apt-get install chromium chromium-driver (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Browser:
    """One visitor (its own cookies) with the checks every page gets: axe-core, no CSP violation, screenshots."""

    def __init__(self, chromium: Any, locale: str = "en-US") -> None:
        self.context = chromium.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.csp_errors: list[str] = []
        self.page.on("console", lambda m: self.csp_errors.append(m.text)
                     if "Content Security Policy" in m.text else None)

    def close(self) -> None:
        self.context.close()

    def check(self, name: str, *, allow: tuple[str, ...] = ()) -> None:
        """axe-core in the page: no serious or critical violation; no CSP violation; screenshots at 1280 and 375 px.

        ``allow`` names axe rules a page breaks on purpose, each with its reason at the caller.
        """
        if not AXE.exists():
            _missing(f"axe-core is not installed at {AXE}: run python3 dev.py test (it installs it from npm)")
        page = self.page
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")  # devtools evaluation: the page's CSP allows no script
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
                               ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))")
        bad = [v for v in result if v["impact"] in ("serious", "critical") and v["id"] not in allow]
        assert not bad, f"{name}: accessibility violations: {json.dumps(bad, indent=1)}"
        assert not self.csp_errors, f"{name}: CSP violations: {self.csp_errors}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        for width in (1280, 375):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

    def h1(self) -> str:
        return str(self.page.locator("h1").inner_text())


@pytest.fixture
def browser(chromium: Any) -> Iterator[Browser]:
    b = Browser(chromium)
    yield b
    b.close()


@pytest.fixture
def second_browser(chromium: Any) -> Iterator[Browser]:
    b = Browser(chromium)
    yield b
    b.close()


def authorize_on_instance(page: Any, username: str) -> None:
    """What the volunteer does on the instance's own page: choose the account and allow it (mastodon-mock's picker)."""
    page.wait_for_url("**/oauth/authorize?**")
    page.click(f'button[name="username"][value="{username}"]')


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_in(b: Browser, web: WebServer, username: str) -> None:
    """Sign in with the organisation's Mastodon account, through the instance's OAuth page."""
    b.page.goto(web.base_url + "/signin")
    b.page.fill("#instance", web.env.mastodon.base_url)
    b.page.click("form.card button[type=submit]")
    authorize_on_instance(b.page, username)
    b.page.wait_for_url(web.base_url + "/**")


def unique(prefix: str) -> str:
    return f"{prefix}{next(_n)}{os.getpid() % 1000}"


def rm_shots() -> None:  # pragma: no cover - a helper for a person clearing old screenshots
    shutil.rmtree(SHOTS, ignore_errors=True)
