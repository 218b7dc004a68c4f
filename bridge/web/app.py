"""`bridge web`: the Starlette application (routes, sessions, pages). ``create_app(config)`` builds it.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous): they
hold who is signed in, the CSRF token and the OAuth attempt under way (its
``state`` hash; the PKCE verifier stays in the ledger). Blocking work (the
ledger, X, the instance) runs in the thread pool, one ledger per thread.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bridge.config import Config
from bridge.errors import AuthError, BridgeError, ConfigError, SourceError, TransientError
from bridge.ledger import Ledger
from bridge.web import archive, flows, pages
from bridge.web.flows import PageError
from bridge.web.i18n import LANGS, pick_language, texts
from bridge.web.security import RateLimiter, SecurityHeaders, csrf_ok, csrf_token, derive_key, safe_next

HERE = Path(__file__).resolve().parent
SESSION_AGE = 8 * 3600  # seconds a sign-in lasts
T = TypeVar("T")
log = logging.getLogger("bridge.web")


class Web:
    """The app's shared state: configuration, templates, a ledger per thread, the rate limiter."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
        self.limiter = RateLimiter(config.web.rate_limit)
        self._local = threading.local()
        self._ledgers: list[Ledger] = []
        self._lock = threading.Lock()

    def ledger(self) -> Ledger:
        ledger = getattr(self._local, "ledger", None)
        if ledger is None:
            ledger = self._local.ledger = Ledger.open(self.config.database)
            with self._lock:
                self._ledgers.append(ledger)
        return ledger

    def close(self) -> None:
        with self._lock:
            for ledger in self._ledgers:
                ledger.close()
            self._ledgers.clear()

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(config, ledger, *args)`` in the thread pool."""
        def call() -> T:
            return func(self.config, self.ledger(), *args)

        return await run_in_threadpool(call)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        lang = pick_language(request)
        t = texts(lang)
        html = self.env.get_template(template).render(
            t=t, lang=lang, other=[code for code in LANGS if code != lang][0],
            here=quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&"),
            csrf=csrf_token(request.session), signed_org=request.session.get("org"),
            operator=bool(request.session.get("operator")), **context,
        )
        return HTMLResponse(html, status_code=status)

    def problem(self, request: Request, key: str, detail: str = "", status: int = 400, **extra: Any) -> HTMLResponse:
        """A clear page for a problem: its title and body from the texts, an optional detail, never a traceback."""
        t = texts(pick_language(request))
        title = t.get(f"{key}_title", t["problem_title"])
        body = t.get(f"{key}_body", "")
        if detail in t:
            detail = t[detail]
        return self.render(request, "problem.html", status=status, title=title, body=body, detail=detail, **extra)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def create_app(config: Config, *, run_jobs: bool = True) -> Starlette:
    """``run_jobs``: start the archive-import worker (off for an app that only serves pages, e.g. a benchmark)."""
    web = Web(config)
    runner = archive.Runner(config)

    def limited(request: Request, group: str) -> HTMLResponse | None:
        if web.limiter.allow(_client(request), group):
            return None
        return web.problem(request, "rate", status=429)

    async def form_checked(request: Request) -> dict[str, str]:
        form = await request.form(max_files=0, max_fields=50)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not csrf_ok(request.session, values.get("csrf")):
            raise PageError("csrf", status=400)
        return values

    def failure(request: Request, exc: Exception) -> HTMLResponse:
        """Errors of the library are shown by their message (they name the problem and the place)."""
        if isinstance(exc, PageError):
            return web.problem(request, exc.key, exc.detail, exc.status)
        if isinstance(exc, (ConfigError, SourceError, AuthError)):
            return web.problem(request, "problem", str(exc), 400)
        if isinstance(exc, TransientError):
            return web.problem(request, "problem", str(exc), 503)
        if isinstance(exc, BridgeError):
            return web.problem(request, "problem", str(exc), 502)
        raise exc

    # ---------------------------------------------------------------- public pages
    async def home(request: Request) -> Response:
        return web.render(request, "home.html")

    async def set_lang(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in LANGS:
            raise HTTPException(404)
        response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        response.set_cookie("lang", lang, max_age=365 * 86400, httponly=True, samesite="lax",
                            secure=config.web.secure_cookies)
        return response

    async def invite_page(request: Request) -> Response:
        blocked = limited(request, "invite")
        if blocked:
            return blocked
        token = request.path_params["token"]
        try:
            org, expires = await web.run(flows.check_invitation, token)
        except PageError as exc:
            return failure(request, exc)
        request.session["invite_path"] = request.url.path
        return web.render(request, "invite.html", org=org, expires=expires, form=flows.LinkForm(),
                          default_instance=config.mastodon.default_instance)

    async def invite_submit(request: Request) -> Response:
        blocked = limited(request, "invite")
        if blocked:
            return blocked
        token = request.path_params["token"]
        try:
            values = await form_checked(request)
            form = flows.LinkForm(values.get("x_username", "")[:100], values.get("feed_url", "")[:2000],
                                  values.get("instance", "")[:300])
            url, key = await web.run(flows.begin_link, token, form)
        except PageError as exc:
            if exc.key == "problem":
                return await _invite_again(request, token, exc.detail)
            return failure(request, exc)
        except (ConfigError, SourceError, TransientError, BridgeError) as exc:
            return await _invite_again(request, token, str(exc))
        request.session["login"] = key
        return RedirectResponse(url, status_code=303)

    async def _invite_again(request: Request, token: str, error: str) -> Response:
        """The invitation page again, with what was typed and the problem named above the form."""
        try:
            org, expires = await web.run(flows.check_invitation, token)
        except PageError as exc:
            return failure(request, exc)
        form = await request.form()
        t = texts(pick_language(request))
        typed = flows.LinkForm(str(form.get("x_username", ""))[:100], str(form.get("feed_url", ""))[:2000],
                               str(form.get("instance", ""))[:300], [t.get(error, error)])
        return web.render(request, "invite.html", status=400, org=org, expires=expires, form=typed,
                          default_instance=config.mastodon.default_instance)

    async def signin_page(request: Request) -> Response:
        return web.render(request, "signin.html", default_instance=config.mastodon.default_instance, error="")

    async def signin_submit(request: Request) -> Response:
        blocked = limited(request, "signin")
        if blocked:
            return blocked
        try:
            values = await form_checked(request)
            url, key = await web.run(flows.begin_signin, values.get("instance", "")[:300])
        except PageError as exc:
            return failure(request, exc)
        except BridgeError as exc:
            return web.render(request, "signin.html", status=400, default_instance=config.mastodon.default_instance,
                              error=str(exc))
        request.session["login"] = key
        return RedirectResponse(url, status_code=303)

    async def callback(request: Request) -> Response:
        blocked = limited(request, "signin")
        if blocked:
            return blocked
        state = request.query_params.get("state", "")[:200]
        key = flows.state_hash(state)
        mine = request.session.pop("login", None)
        if not state or not isinstance(mine, str) or not hmac.compare_digest(mine, key):
            return web.problem(request, "stale", status=400, retry=request.session.get("invite_path"))
        taken = await web.run(lambda _c, ledger: ledger.take_login(key, flows.now()))
        if taken is None:
            return web.problem(request, "stale", status=400, retry=request.session.get("invite_path"))
        purpose, data = taken
        retry = request.session.get("invite_path") if purpose == "link" else "/signin"
        if request.query_params.get("error") or not request.query_params.get("code"):
            # The instance's answer to "Deny" (RFC 6749 section 4.1.2.1: error=access_denied)
            return web.problem(request, "denied", status=400, retry=retry)
        code = request.query_params["code"][:500]
        try:
            if purpose == "link":
                linked = await web.run(flows.finish_link, data, code)
                request.session.clear()
                request.session["org"] = linked.org
                return web.render(request, "linked.html", linked=linked)
            org, acct = await web.run(flows.finish_signin, data, code)
        except (PageError, BridgeError) as exc:
            return failure(request, exc)
        if org is None:
            return web.problem(request, "notlinked", status=403, acct=acct)
        request.session.clear()
        request.session["org"] = org
        return RedirectResponse("/org", status_code=303)

    # ---------------------------------------------------------------- the organisation's page
    def signed_org(request: Request) -> str:
        org = request.session.get("org")
        if not isinstance(org, str):
            raise PageError("signin_needed", status=403)
        return org

    async def org_page(request: Request) -> Response:
        try:
            org = signed_org(request)
            data = await web.run(pages.org_page, org, None)
        except PageError as exc:
            if exc.key == "signin_needed":
                return RedirectResponse("/signin", status_code=303)
            return failure(request, exc)
        if data is None:
            request.session.pop("org", None)
            return RedirectResponse("/signin", status_code=303)
        note = request.session.pop("note", None)
        return web.render(request, "org.html", d=data, note=note)

    async def org_action(request: Request) -> Response:
        action = request.path_params["action"]
        try:
            org = signed_org(request)
            values = await form_checked(request)
            if action == "policy" and values.get("do") == "preview":
                data = await web.run(pages.org_page, org, pages.policy_from_form(values))
                if data is None:
                    return RedirectResponse("/signin", status_code=303)
                return web.render(request, "org.html", d=data, note=None)
            note = await web.run(pages.org_action, org, action, values)
        except PageError as exc:
            if exc.key == "signin_needed":
                return RedirectResponse("/signin", status_code=303)
            return failure(request, exc)
        except BridgeError as exc:
            return failure(request, exc)
        if action == "unlink":
            request.session.clear()
            return web.render(request, "unlinked.html", org=org)
        request.session["note"] = note
        return RedirectResponse("/org", status_code=303)

    # ---------------------------------------------------------------- bringing the archive over
    async def archive_page(request: Request) -> Response:
        try:
            org = signed_org(request)
        except PageError:
            return RedirectResponse("/signin", status_code=303)
        job = await web.run(lambda _c, ledger: ledger.latest_job(org, archive.KIND))
        return web.render(request, "archive.html", org=org, job=job, view=pages.job_view(job, flows.now()),
                          refresh=request.query_params.get("refresh") != "off", auto_pace=config.web.backfill_pace is None,
                          cap=config.web.max_upload_bytes, error=request.session.pop("archive_error", None))

    async def archive_upload(request: Request) -> Response:
        try:
            org = signed_org(request)
        except PageError:
            return RedirectResponse("/signin", status_code=303)
        declared = request.headers.get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > config.web.max_upload_bytes + 64 * 1024:
                raise PageError("too_large", status=413)  # refused before a byte is read
            path = await archive.receive(request.stream(), request.headers.get("content-type", ""),
                                         archive.upload_dir(config), config.web.max_upload_bytes,
                                         lambda given: csrf_ok(request.session, given))
            await web.run(archive.plan_upload, org, path)
        except PageError as exc:
            if exc.key == "problem":
                t = texts(pick_language(request))
                request.session["archive_error"] = t.get(exc.detail, exc.detail)
                return RedirectResponse("/org/archive", status_code=303)
            return failure(request, exc)
        return RedirectResponse("/org/archive", status_code=303)

    async def archive_action(request: Request) -> Response:
        try:
            org = signed_org(request)
            values = await form_checked(request)
            job_id = int(values.get("job", "0")) if values.get("job", "").isdigit() else 0
            if request.path_params["action"] == "start":
                await web.run(archive.start, org, job_id)
                runner.notify()
            elif request.path_params["action"] == "discard":
                await web.run(archive.discard, org, job_id)
            else:
                raise PageError("notfound", status=404)
        except PageError as exc:
            if exc.key == "signin_needed":
                return RedirectResponse("/signin", status_code=303)
            return failure(request, exc)
        return RedirectResponse("/org/archive", status_code=303)

    async def signout(request: Request) -> Response:
        try:
            await form_checked(request)
        except PageError as exc:
            return failure(request, exc)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    # ---------------------------------------------------------------- the operator's page
    async def admin_page(request: Request) -> Response:
        if not request.session.get("operator"):
            return web.render(request, "admin_login.html", error=False)
        data = await web.run(pages.admin_page)
        return web.render(request, "admin.html", d=data, invitation=None)

    async def admin_login(request: Request) -> Response:
        blocked = limited(request, "signin")
        if blocked:
            return blocked
        try:
            values = await form_checked(request)
        except PageError as exc:
            return failure(request, exc)
        given = values.get("token", "")
        want = config.web.operator_token
        if not want or not hmac.compare_digest(want.encode(), given.encode()):
            return web.render(request, "admin_login.html", status=403, error=True)
        request.session.clear()
        request.session["operator"] = True
        request.session["csrf"] = secrets.token_urlsafe(32)  # a new session after the sign-in
        return RedirectResponse("/admin", status_code=303)

    async def admin_invite(request: Request) -> Response:
        if not request.session.get("operator"):
            return RedirectResponse("/admin", status_code=303)
        try:
            values = await form_checked(request)
            invitation = await web.run(flows.make_invitation, values.get("org", "").strip()[:64])
            data = await web.run(pages.admin_page)
        except (PageError, ConfigError) as exc:
            return failure(request, exc)
        return web.render(request, "admin.html", d=data, invitation=invitation)

    # ---------------------------------------------------------------- errors
    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return web.problem(request, "notfound", status=405)
        return web.problem(request, "notfound", status=404 if status == 404 else status)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("web request failed: %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return web.problem(request, "server", status=500)

    routes = [
        Route("/", home),
        Route("/lang/{lang}", set_lang),
        Route("/invite/{token}", invite_page, methods=["GET"]),
        Route("/invite/{token}", invite_submit, methods=["POST"]),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin_submit, methods=["POST"]),
        Route("/oauth/callback", callback),
        Route("/org", org_page, methods=["GET"]),
        Route("/org/archive", archive_page, methods=["GET"]),
        Route("/org/archive", archive_upload, methods=["POST"]),
        Route("/org/archive/{action:str}", archive_action, methods=["POST"]),
        Route("/org/{action:str}", org_action, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/admin", admin_page, methods=["GET"]),
        Route("/admin/login", admin_login, methods=["POST"]),
        Route("/admin/invite", admin_invite, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    loopback_http = not config.web.secure_cookies
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, loopback_http=loopback_http),
            Middleware(SessionMiddleware, secret_key=derive_key(config.web.secret, "session").hex(),
                       session_cookie="bridge_session", max_age=SESSION_AGE, same_site="lax",
                       https_only=config.web.secure_cookies),
        ],
        exception_handlers={HTTPException: not_found, Exception: server_error},
        lifespan=_lifespan(web, runner if run_jobs else None),
    )
    app.state.web = web
    return app


def _lifespan(web: Web, runner: archive.Runner | None) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if runner is not None:
            runner.begin()
        yield
        if runner is not None:
            await run_in_threadpool(runner.close)  # the import stops after its current post; resumed next start
        web.close()

    return lifespan
