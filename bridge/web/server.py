"""Running `bridge web` under uvicorn, with the checks that keep it from being exposed by mistake."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bridge.config import Config
from bridge.errors import ConfigError


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: Config, host: str) -> None:
    """What must be set before the pages answer anybody."""
    web = config.web
    if not web.secret:
        raise ConfigError("web.secret_file: bridge web needs a secret to sign invitations and cookies;"
                          " create one with: head -c 32 /dev/urandom | base64 > /etc/geno-bridge/web-secret")
    if len(web.secret) < 16:
        raise ConfigError("web.secret_file: the secret is shorter than 16 characters; make a longer one")
    public = urlsplit(web.base_url)
    if not web.secure_cookies and not (public.scheme == "http" and _loopback(public.hostname or "") and _loopback(host)):
        raise ConfigError("web.secure_cookies: false is only allowed for plain http on loopback (tests);"
                          " behind a reverse proxy with TLS keep it true")
    if web.secure_cookies and public.scheme != "https" and not _loopback(public.hostname or ""):
        raise ConfigError(f"web.public_url: {web.base_url} is not https; the session cookies are Secure,"
                          " so give the https address of the reverse proxy")


def serve(config: Config, *, host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from bridge.web.app import create_app

    host = host or config.web.host
    check(config, host)
    # proxy_headers: the client address a reverse proxy on this machine forwards (for the rate limits).
    uvicorn.run(create_app(config), host=host, port=port or config.web.port, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1", server_header=False, log_level="warning")
    return 0
