"""Linking a cooperative's Mastodon account: instance check, OAuth app, authorisation, token.

Pure library logic; ``bridge.cli`` does the prompting and printing. The
operator never sees the cooperative's password: a volunteer opens the
authorisation link, logs in as the cooperative, and passes on the one-time code
(out-of-band redirect). ``state`` and PKCE (S256, where the server advertises it)
protect the exchange.

The OAuth endpoints are called with httpx directly because Mastodon.py 2.3 has
no PKCE; everything that needs a token goes through ``MastodonTarget``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx

from bridge.errors import ConfigError, TransientError
from bridge.ledger import AppRecord
from bridge.policy import InstanceLimits
from bridge.targets.mastodon import MastodonTarget

# The minimum the bridge uses (Mastodon docs, "OAuth scopes"): read the own
# account and statuses (reconciliation), post statuses and media. The same
# string goes to app registration, the authorisation URL and the token exchange;
# Mastodon refuses a code whose scopes differ from the app's.
SCOPES = "read:accounts read:statuses write:statuses write:media"
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
CLIENT_WEBSITE = "https://geno.social"


class AppStore(Protocol):
    """What linking needs from the ledger (``bridge.ledger.Ledger`` satisfies it)."""

    def get_app(self, instance: str) -> AppRecord | None: ...

    def save_app(self, app: AppRecord) -> None: ...


@dataclass(frozen=True)
class AuthRequest:
    """One authorisation attempt: the URL to open and what the exchange must send back."""

    url: str
    state: str
    code_verifier: str | None  # None when the server does not advertise PKCE S256
    token_endpoint: str
    redirect_uri: str = OOB_REDIRECT  # `bridge web` sends the browser back to itself


@dataclass(frozen=True)
class LinkedAccount:
    account_id: str
    acct: str  # as Mastodon reports it ("name" for a local account)
    url: str  # profile page
    username: str
    domain: str  # the instance's LOCAL_DOMAIN
    limits: InstanceLimits

    @property
    def full_acct(self) -> str:
        """``name@domain``: what a mention from another server needs."""
        return self.acct if "@" in self.acct else f"{self.username}@{self.domain}"


# -- the instance ----------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_instance_url(url: str) -> str:
    """``geno.social`` -> ``https://geno.social``; refuses http:// except on loopback.

    Tokens travel in every request: plain http is only acceptable to a server on
    this machine (tests, the demo).
    """
    text = url.strip()
    if not text:
        raise ConfigError("instance URL is empty; give one like https://geno.social")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not an instance URL; give one like https://geno.social")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: give only the instance address, like https://geno.social (no login, query or #)")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{url}: plain http:// is only accepted for a server on this machine; use https://{parts.netloc}"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def check_instance(url: str, *, timeout: float = 15.0) -> str:
    """Normalise ``url`` and make sure a Mastodon-compatible server answers there.

    Returns the base URL to store. One request: GET /api/v2/instance, which must
    be JSON with a ``configuration`` object and a ``domain`` or ``version``.
    """
    base = normalise_instance_url(url)
    probe = f"{base}/api/v2/instance"
    try:
        r = httpx.get(probe, timeout=timeout, follow_redirects=False, headers={"Accept": "application/json"})
    except httpx.TimeoutException as exc:
        raise TransientError(f"{base} did not answer within {timeout:g}s ({type(exc).__name__}); try again later") from exc
    except httpx.TransportError as exc:
        raise ConfigError(f"cannot reach {base}: {exc}; check the address") from exc
    if r.is_redirect:
        raise ConfigError(f"{base} redirects to {r.headers.get('location', '?')}; use that address instead")
    if r.status_code >= 500:
        raise TransientError(f"{base} answered {r.status_code} to GET /api/v2/instance; try again later")
    content_type = r.headers.get("content-type", "?")
    try:
        body = r.json()
    except ValueError:
        body = None
    if (
        r.status_code != 200
        or not isinstance(body, dict)
        or not isinstance(body.get("configuration"), dict)
        or not (body.get("domain") or body.get("version"))
    ):
        what = "JSON without a Mastodon instance shape" if isinstance(body, dict) else content_type.split(";")[0]
        raise ConfigError(
            f"{base} does not look like a Mastodon server: GET /api/v2/instance answered {r.status_code} ({what})"
        )
    return base


# -- the OAuth app -----------------------------------------------------------------


def _oauth_failure(instance: str, what: str, exc: Exception) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{instance} did not answer while {what}; try again later")
    return ConfigError(f"cannot reach {instance} while {what}: {exc}")


def _error_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.reason_phrase or ""
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "")
    return ""


def ensure_app(
    instance: str, client_name: str, store: AppStore, *, website: str | None = CLIENT_WEBSITE, timeout: float = 30.0,
    redirect_uri: str = OOB_REDIRECT,
) -> AppRecord:
    """The OAuth app for ``instance``, registered on first use and kept in ``store``.

    One app per instance serves every organisation there (POST /api/v1/apps).
    An app registered with other scopes, or without ``redirect_uri`` among its
    redirect URIs, is replaced (keeping its other redirect URIs: `bridge link`
    uses the out-of-band one, `bridge web` its own callback), since Mastodon
    refuses codes whose scopes or redirect differ from the app's.
    """
    existing = store.get_app(instance)
    same_scopes = existing is not None and set(existing.scopes.split()) == set(SCOPES.split())
    if existing and same_scopes and redirect_uri in existing.redirect_uri.split():
        return existing
    uris = [redirect_uri]
    if existing and same_scopes:
        uris = [u for u in existing.redirect_uri.split() if u != redirect_uri] + uris
    data: dict[str, str] = {"client_name": client_name, "redirect_uris": "\n".join(uris), "scopes": SCOPES}
    if website:
        data["website"] = website
    try:
        r = httpx.post(f"{instance}/api/v1/apps", data=data, timeout=timeout)
    except httpx.HTTPError as exc:
        raise _oauth_failure(instance, "registering the OAuth app", exc) from exc
    if r.status_code >= 500 or r.status_code == 429:
        raise TransientError(f"{instance} answered {r.status_code} to POST /api/v1/apps; try again later")
    try:
        body: Any = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict) or not body.get("client_id") or not body.get("client_secret"):
        raise ConfigError(
            f"{instance} refused to register the OAuth app (POST /api/v1/apps answered {r.status_code}: {_error_text(r)})"
        )
    app = AppRecord(
        instance=instance,
        client_id=str(body["client_id"]),
        client_secret=str(body["client_secret"]),
        scopes=SCOPES,
        redirect_uri="\n".join(uris),
    )
    store.save_app(app)
    return app


# -- authorisation --------------------------------------------------------------------


def _same_origin(url: object, base: str) -> str | None:
    """An advertised endpoint is used only on the instance's own origin: the client secret goes there."""
    if not isinstance(url, str):
        return None
    a, b = urlsplit(url), urlsplit(base)
    return url if (a.scheme, a.netloc) == (b.scheme, b.netloc) and not a.query and not a.fragment else None


def _server_info(instance: str, timeout: float) -> dict[str, Any]:
    """GET /.well-known/oauth-authorization-server (Mastodon 4.3+); {} when absent."""
    try:
        r = httpx.get(f"{instance}/.well-known/oauth-authorization-server", timeout=timeout)
        body = r.json() if r.status_code == 200 else {}
    except ValueError:
        return {}
    except httpx.HTTPError as exc:
        raise _oauth_failure(instance, "reading its OAuth configuration", exc) from exc
    return body if isinstance(body, dict) else {}


def authorization_request(
    app: AppRecord, *, state: str | None = None, timeout: float = 15.0, redirect_uri: str = OOB_REDIRECT
) -> AuthRequest:
    """Build the URL the volunteer opens (1 request, to learn PKCE support).

    ``state`` is random unless given. PKCE S256 (RFC 7636) is used when the server
    lists it in ``code_challenge_methods_supported`` (Mastodon 4.3+).
    ``force_login`` makes the browser ask which account to use, so a volunteer
    logged in as themself does not link their personal account by mistake.
    """
    info = _server_info(app.instance, timeout)
    authorize = _same_origin(info.get("authorization_endpoint"), app.instance) or f"{app.instance}/oauth/authorize"
    token_endpoint = _same_origin(info.get("token_endpoint"), app.instance) or f"{app.instance}/oauth/token"
    state = state or secrets.token_urlsafe(24)
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": redirect_uri,
        "scope": app.scopes,
        "state": state,
        "force_login": "true",
    }
    verifier: str | None = None
    methods = info.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" in methods:
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]: RFC 7636 allows 43-128
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        params["code_challenge_method"] = "S256"
    return AuthRequest(url=f"{authorize}?{urlencode(params)}", state=state, code_verifier=verifier,
                       token_endpoint=token_endpoint, redirect_uri=redirect_uri)


def exchange_code(app: AppRecord, code: str, auth_request: AuthRequest, *, timeout: float = 30.0) -> str:
    """Trade the volunteer's code for an access token (POST /oauth/token). Returns the token."""
    code = code.strip()
    if not code:
        raise ConfigError(f"no authorisation code given for {app.instance}; paste the code the page showed")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": auth_request.redirect_uri,
        "scope": app.scopes,
    }
    if auth_request.code_verifier:
        data["code_verifier"] = auth_request.code_verifier
    try:
        r = httpx.post(auth_request.token_endpoint, data=data, timeout=timeout)
    except httpx.HTTPError as exc:
        raise _oauth_failure(app.instance, "exchanging the code", exc) from exc
    if r.status_code >= 500 or r.status_code == 429:
        raise TransientError(f"{app.instance} answered {r.status_code} to the code exchange; try the same code again soon")
    try:
        body: Any = r.json()
    except ValueError:
        body = None
    if r.status_code in (400, 401, 403):
        raise ConfigError(
            f"the code was not accepted by {app.instance} ({_error_text(r) or r.status_code}); codes are single-use and "
            "expire after about 10 minutes: run the link command again and ask for a fresh code"
        )
    if r.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        raise ConfigError(f"{app.instance} gave no token for the code (POST /oauth/token answered {r.status_code})")
    granted = body.get("scope")
    if isinstance(granted, str) and granted.strip():
        missing = set(app.scopes.split()) - _expand_scopes(granted.split())
        if missing:
            raise ConfigError(f"{app.instance} granted too few permissions: missing {' '.join(sorted(missing))}")
    return str(body["access_token"])


def _expand_scopes(granted: list[str]) -> set[str]:
    """``write`` implies every ``write:*`` (Mastodon docs, "OAuth scopes")."""
    out = set(granted)
    for scope in granted:
        if ":" not in scope:
            out |= {s for s in SCOPES.split() if s.startswith(scope + ":")}
    return out


def verify_token(instance: str, token: str, *, timeout: float = 30.0) -> LinkedAccount:
    """Who the token acts for, and the instance limits to cache (2 requests).

    Raises ``AuthError`` for a refused (e.g. revoked) token.
    """
    target = MastodonTarget(instance, token, timeout=timeout)
    try:
        account = target.verify()
        info = target.instance_info()
    finally:
        target.close()
    return LinkedAccount(
        account_id=account.id,
        acct=account.acct,
        url=account.url,
        username=account.username,
        domain=info.domain or (urlsplit(instance).hostname or ""),
        limits=info.limits,
    )


def plain_instructions(auth_url: str, instance: str) -> str:
    """What to send the cooperative's volunteer, who need not be technical."""
    host = urlsplit(instance).netloc or instance
    return (
        f"To connect the cooperative's Mastodon account on {host}:\n"
        "\n"
        "1. Open this link in a web browser:\n"
        f"   {auth_url}\n"
        f"2. Log in as the cooperative's account on {host} (not your personal account).\n"
        "   If you are asked to choose an account, choose the cooperative's.\n"
        '3. Check the page says it is geno-bridge asking to post, then click "Authorize".\n'
        "4. The page shows a code. Copy it and send it to the person running the bridge\n"
        "   (or paste it here if you are running the command yourself).\n"
        "\n"
        "The code works once and only for about 10 minutes. Nobody needs your password.\n"
    )
