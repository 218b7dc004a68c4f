"""Configuration: one YAML file into typed, frozen dataclasses, or a ConfigError that says exactly what is wrong.

Where the file is found: ``--config PATH``, else ``$BRIDGE_CONFIG``, else ``./config.yaml``.
Any string value may use ``${ENV_VAR}``. A secret may come from a file instead
(``bearer_token_file: /run/credentials/geno-bridge/x-bearer``) so systemd's
``LoadCredential=`` works without the secret ever being in the config file.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from bridge.errors import ConfigError
from bridge.policy import Policy, VisibilityPolicy

DEFAULT_X_API = "https://api.x.com"
DEFAULT_INSTANCE = "https://geno.social"
DEFAULT_MEDIA_HOSTS = ("pbs.twimg.com", "video.twimg.com")
VISIBILITIES = ("public", "unlisted", "private", "direct")

# Upper bounds: a value past them is a typo, and would only fail later, at run time
# (a 10^20 s interval overflows the scheduler's datetime arithmetic; an infinite timeout
# overflows threading's wait).
MAX_DURATION = 30 * 86400  # seconds: poll intervals, jitter, refresh
MAX_TIMEOUT = 86400.0  # seconds: request timeouts, media processing, shutdown grace
MAX_CONCURRENCY = 256
MAX_YAML_DEPTH = 32  # the deepest real configuration is 5 levels (organisations.NAME.mentions.map.HANDLE)
MAX_SECRET_FILE_BYTES = 64 * 1024  # a bearer token is ~120 bytes; this stops /dev/zero and the like


@dataclass(frozen=True)
class Budget:
    """What reading X may cost: requests per 15 minutes and/or posts read per month (0 = no limit)."""

    requests_per_15min: int = 0
    posts_per_month: int = 0


@dataclass(frozen=True)
class XConfig:
    bearer_token: str = field(default="", repr=False)
    api_base_url: str = DEFAULT_X_API
    media_hosts: tuple[str, ...] = DEFAULT_MEDIA_HOSTS
    poll_interval: int = 300  # seconds: the shortest interval an active organisation is polled at
    max_poll_interval: int = 3600  # seconds: the longest, for organisations that rarely post
    timeout: float = 30.0
    max_media_bytes: int = 200 * 1024 * 1024
    media_download_deadline: int = 600  # seconds a whole media download may take (timeout is per read)
    budget: Budget = field(default_factory=Budget)


DEFAULT_PLC = "https://plc.directory"
DEFAULT_APPVIEW = "https://public.api.bsky.app"


@dataclass(frozen=True)
class BlueskyConfig:
    """Reading Bluesky: public, no credentials. The URLs are configurable for tests and mirrors."""

    plc_url: str = DEFAULT_PLC  # where did:plc documents are read (https://web.plc.directory/spec/v0.1/did-plc)
    appview_url: str = DEFAULT_APPVIEW  # where handles are resolved (com.atproto.identity.resolveHandle)
    poll_interval: int = 300  # seconds between polls of an organisation reading only Bluesky (free: no X budget)
    timeout: float = 30.0
    max_media_bytes: int = 100 * 1024 * 1024
    media_download_deadline: int = 600  # seconds a whole media download may take (timeout is per read)


@dataclass(frozen=True)
class MastodonConfig:
    default_instance: str = DEFAULT_INSTANCE
    client_name: str = "geno-bridge"
    website: str = ""
    timeout: float = 30.0
    media_poll_timeout: float = 300.0


@dataclass(frozen=True)
class FeedConfig:
    """How website feeds are read and what an entry becomes (bridge/sources/feed.py)."""

    post: str = "title_link"  # title_link: title, a short summary, the link; full: the whole text (short notes)
    categories_as_hashtags: bool = False
    poll_interval: int = 300  # seconds between polls of an organisation reading only feeds (free: no X budget)
    timeout: float = 30.0  # seconds per read
    deadline: float = 60.0  # seconds the whole request may take, redirects included
    max_bytes: int = 5 * 1024 * 1024  # bytes on the wire
    max_decoded_bytes: int = 20 * 1024 * 1024  # bytes after Content-Encoding (gzip bomb guard)
    max_media_bytes: int = 40 * 1024 * 1024


FEED_POST_MODES = ("title_link", "full")
EDIT_MODES = ("leave", "repost")  # an edit on a target without edits (Bluesky): see Policy.edits_where_impossible


@dataclass(frozen=True)
class DaemonConfig:
    concurrency: int = 4
    shutdown_grace: float = 30.0  # seconds in-flight deliveries may take after SIGTERM
    jitter: int = 30  # seconds of random spread per poll, so organisations do not poll in lockstep
    refresh_interval: int = 60  # seconds between checks for linked / unlinked organisations
    status_file: str = ""  # where `bridge status --check` reads the daemon's heartbeat; default next to the ledger


@dataclass(frozen=True)
class WebConfig:
    """`bridge web` (bridge/web/): where it listens, how it signs links and cookies, what it accepts."""

    host: str = "127.0.0.1"  # loopback: a reverse proxy with TLS goes in front (README)
    port: int = 8350
    public_url: str = ""  # the address volunteers open, e.g. https://bridge.geno.social; default http://host:port
    secret: str = field(default="", repr=False)  # signs invitation links and session cookies (secret_file)
    operator_token: str = field(default="", repr=False)  # the operator page's password (operator_token_file)
    secure_cookies: bool = True  # false only for plain-http tests on loopback
    invite_days: int = 7
    max_upload_bytes: int = 2 * 1024**3  # an X archive with media is often 1 GB or more
    rate_limit: int = 30  # requests per address per 10 minutes to the invitation and sign-in pages
    backfill_pace: float | None = None  # seconds after each post of an archive import; None: auto (the instance's limits)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    path: Path | None
    database: Path
    log_format: str = "auto"
    x: XConfig = field(default_factory=XConfig)
    bluesky: BlueskyConfig = field(default_factory=BlueskyConfig)
    mastodon: MastodonConfig = field(default_factory=MastodonConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    web: WebConfig = field(default_factory=WebConfig)
    defaults: Policy = field(default_factory=Policy)
    organisations: dict[str, Policy] = field(default_factory=dict)

    def policy_for(self, org: str) -> Policy:
        return self.organisations.get(org, self.defaults)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the configuration, for the log masker: the bearer token and
        any password given inside a URL (``https://user:pass@host``)."""
        found = [self.x.bearer_token, self.web.secret, self.web.operator_token]
        for url in (self.x.api_base_url, self.bluesky.plc_url, self.bluesky.appview_url, self.mastodon.default_instance):
            password = urlsplit(url).password
            if password:
                found.append(password)
        return tuple(s for s in found if s)

    @property
    def heartbeat_path(self) -> Path:
        if self.daemon.status_file:
            return Path(self.daemon.status_file)
        return self.database.with_name(self.database.name + ".heartbeat")


# ---------------------------------------------------------------------------
# Finding and reading the file


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("BRIDGE_CONFIG")
    if env:
        return Path(env)
    return Path("config.yaml")


class _Loader(yaml.SafeLoader):
    """Safe YAML, with duplicate keys refused (a silently ignored duplicate hides mistakes)
    and nesting limited (PyYAML composes recursively: thousands of levels end in a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if isinstance(index, yaml.ScalarNode):  # a mapping's value: index is its key
            step = f".{index.value}" if self._path else str(index.value)
        elif isinstance(index, int):  # an item of a sequence
            step = f"[{index}]"
        else:  # a key, or the document itself
            step = ""
        self._path.append(step)
        try:
            if len(self._path) > MAX_YAML_DEPTH:
                where = "".join(self._path[:4]).lstrip(".") or "(top level)"
                raise yaml.composer.ComposerError(
                    None, None, f"{where}...: nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._path.pop()


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1}, column {mark.column + 1})", mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load and validate. Every problem becomes a ConfigError naming the file and key."""
    p = find_config(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: configuration file not found (give --config PATH, set $BRIDGE_CONFIG, or create ./config.yaml;"
            " config.example.yaml is a documented starting point)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc}") from None
    return parse_config(text, p, environ if environ is not None else dict(os.environ))


def parse_config(text: str, path: Path, environ: dict[str, str]) -> Config:
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: malformed YAML at {where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    except RecursionError:  # a safety net: the loader limits nesting itself
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    if raw is None:
        raw = {}
    return _Reader(path, environ).config(raw)


# ---------------------------------------------------------------------------
# Validation


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class _Reader:
    """Walks the raw YAML with a key path, so every error can say where it is."""

    def __init__(self, path: Path, environ: dict[str, str]) -> None:
        self.path = path
        self.environ = environ

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    # -- primitives ------------------------------------------------------------
    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key or "(top level)", f"expected a mapping of keys, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                hint = difflib.get_close_matches(str(k), allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(allowed)}"
                raise self.fail(f"{key}.{k}" if key else str(k), f"unknown key{suggestion}")
        return value

    def expand(self, value: str, key: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.environ:
                raise self.fail(key, f"environment variable ${{{name}}} is not set")
            return self.environ[name]

        return _ENV_RE.sub(sub, value)

    def string(self, raw: dict[str, Any], name: str, key: str, default: str) -> str:
        if name not in raw or raw[name] is None:
            return default
        value = raw[name]
        if not isinstance(value, str):
            raise self.fail(f"{key}.{name}" if key else name, f"expected a string, got {_kind(value)}")
        return self.expand(value, f"{key}.{name}" if key else name)

    def choice(self, raw: dict[str, Any], name: str, key: str, default: str, options: tuple[str, ...]) -> str:
        value = self.string(raw, name, key, default)
        if value not in options:
            raise self.fail(f"{key}.{name}", f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def integer(
        self, raw: dict[str, Any], name: str, key: str, default: int, minimum: int = 0, maximum: int | None = None
    ) -> int:
        full = f"{key}.{name}" if key else name
        value = raw.get(name, default)
        if value is None:
            return default
        if isinstance(value, str):
            value = self.expand(value, full)
            if value.strip().lstrip("-").isdigit():
                value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(full, f"expected a whole number, got {_kind(value)}")
        if value < minimum:
            raise self.fail(full, f"expected a number of at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(full, f"expected a number of at most {maximum}, got {_number(value)}")
        return value

    def seconds(self, raw: dict[str, Any], name: str, key: str, default: float, minimum: float = 0) -> float:
        """A timeout or grace period in seconds: finite, and at most MAX_TIMEOUT."""
        full = f"{key}.{name}"
        value = raw.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(full, f"expected a number of seconds, got {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(full, f"expected a finite number of seconds, got {value}")
        if value < minimum:
            raise self.fail(full, f"expected a number of at least {minimum}, got {value}")
        if value > MAX_TIMEOUT:  # compared before float(): a huge int would overflow it
            raise self.fail(full, f"expected at most {MAX_TIMEOUT:g} seconds (a day), got {_number(value)}")
        return float(value)

    def duration(self, raw: dict[str, Any], name: str, key: str, default: int, minimum: int = 1) -> int:
        """Seconds, given as a number or with a unit: 90, "90s", "5m", "1h", "1d"; at most MAX_DURATION."""
        full = f"{key}.{name}"
        value = raw.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool):
            raise self.fail(full, "expected a duration like 300, \"5m\" or \"1h\", got a boolean")
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str):
            m = _DURATION_RE.match(self.expand(value, full))
            if not m:
                raise self.fail(full, f"expected a duration like 300, \"5m\" or \"1h\", got {value!r}")
            seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            raise self.fail(full, f"expected a duration like 300, \"5m\" or \"1h\", got {_kind(value)}")
        if seconds < minimum:
            raise self.fail(full, f"expected at least {minimum} seconds, got {seconds}")
        if seconds > MAX_DURATION:
            raise self.fail(full, f"expected at most {MAX_DURATION} seconds (30 days), got {_number(seconds)}")
        return seconds

    def boolean(self, raw: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = raw.get(name, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", f"expected true or false, got {_kind(value)}")
        return value

    def secret(self, raw: dict[str, Any], name: str, key: str) -> str:
        """A secret given inline (``name``) or read from a file (``name_file``), not both.

        Left out, it is empty (commands that need it say so when they run); given but
        empty, or with spaces or control characters inside, it is refused here: such a
        token only fails later, at X, with a less helpful message.
        """
        file_key = f"{name}_file"
        if raw.get(name) is not None and raw.get(file_key) is not None:
            raise self.fail(f"{key}.{name}", f"give either {name} or {file_key}, not both")
        if raw.get(file_key) is not None:
            where = f"{key}.{file_key}"
            file_path = Path(self.string(raw, file_key, key, ""))
            if not file_path.is_absolute():
                file_path = self.path.parent / file_path
            value = self._read_secret_file(file_path, where)
            what = f"the secret file {file_path}"
        elif raw.get(name) is not None:
            where = f"{key}.{name}"
            value = self.string(raw, name, key, "").strip()
            what = "the value"
        else:
            return ""
        if not value:
            raise self.fail(where, f"{what} is empty; put the token there, or leave the key out")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise self.fail(where, f"{what} holds spaces, line breaks or control characters; a token is one word")
        return value

    def _read_secret_file(self, file_path: Path, where: str) -> str:
        """Read at most MAX_SECRET_FILE_BYTES (a device like /dev/zero never ends) as UTF-8."""
        try:
            with open(file_path, "rb") as fh:
                data = fh.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as exc:
            raise self.fail(where, f"cannot read the secret file {file_path}: {exc.strerror or exc}") from None
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise self.fail(where, f"the secret file {file_path} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB; is it the right file?")
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self.fail(where, f"the secret file {file_path} is not UTF-8 text; is it the right file?") from None

    def url(self, raw: dict[str, Any], name: str, key: str, default: str) -> str:
        value = self.string(raw, name, key, default).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise self.fail(f"{key}.{name}", f"expected an http(s) URL like https://example.org, got {mask_url(value)!r}")
        return value

    def string_list(self, raw: dict[str, Any], name: str, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        full = f"{key}.{name}"
        value = raw.get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(full, f"expected a list of strings, got {_kind(value)}")
        return tuple(self.expand(v, full) for v in value)

    # -- sections --------------------------------------------------------------
    def config(self, raw: Any) -> Config:
        top = self.mapping(raw, "", ("database", "log_format", "x", "bluesky", "mastodon", "daemon", "feed", "web",
                                          "defaults", "organisations"))
        if "database" not in top or top["database"] in (None, ""):
            raise self.fail("database", "missing required value: the path of the ledger file, e.g. /var/lib/geno-bridge/ledger.db")
        database = Path(self.string(top, "database", "", ""))
        if not database.is_absolute():
            database = (self.path.parent / database).resolve()
        feed = self.feed(top.get("feed"))
        # The feed section's post/categories_as_hashtags are every organisation's default (a policy may override).
        base = Policy(feed_post=feed.post, feed_categories=feed.categories_as_hashtags)  # type: ignore[arg-type]
        defaults = self.policy(top.get("defaults"), "defaults", base)
        orgs_raw = top.get("organisations")
        if orgs_raw is not None and not isinstance(orgs_raw, dict):
            raise self.fail("organisations", f"expected a mapping of organisation names, got {_kind(orgs_raw)}")
        organisations = {
            str(name): self.policy(value, f"organisations.{name}", defaults) for name, value in (orgs_raw or {}).items()
        }
        return Config(
            path=self.path,
            database=database,
            log_format=self.choice(top, "log_format", "", "auto", ("auto", "console", "json")) if "log_format" in top else "auto",
            x=self.x(top.get("x")),
            bluesky=self.bluesky(top.get("bluesky")),
            mastodon=self.mastodon(top.get("mastodon")),
            daemon=self.daemon(top.get("daemon")),
            feed=feed,
            web=self.web(top.get("web")),
            defaults=defaults,
            organisations=organisations,
        )

    def x(self, value: Any) -> XConfig:
        key = "x"
        raw = self.mapping(
            value,
            key,
            ("bearer_token", "bearer_token_file", "api_base_url", "media_hosts", "poll_interval", "max_poll_interval",
             "timeout", "max_media_bytes", "budget", "media_download_deadline"),
        )
        poll = self.duration(raw, "poll_interval", key, 300, minimum=10)
        max_poll = self.duration(raw, "max_poll_interval", key, max(3600, poll), minimum=10)
        if max_poll < poll:
            raise self.fail("x.max_poll_interval", f"must not be shorter than x.poll_interval ({poll} s), got {max_poll} s")
        budget_raw = self.mapping(raw.get("budget"), "x.budget", ("requests_per_15min", "posts_per_month"))
        return XConfig(
            bearer_token=self.secret(raw, "bearer_token", key),
            api_base_url=self.url(raw, "api_base_url", key, DEFAULT_X_API),
            media_hosts=self.string_list(raw, "media_hosts", key, DEFAULT_MEDIA_HOSTS),
            poll_interval=poll,
            max_poll_interval=max_poll,
            timeout=self.seconds(raw, "timeout", key, 30.0, minimum=1),
            max_media_bytes=self.integer(raw, "max_media_bytes", key, XConfig.max_media_bytes, minimum=1),
            media_download_deadline=self.duration(raw, "media_download_deadline", key, XConfig.media_download_deadline),
            budget=Budget(
                requests_per_15min=self.integer(budget_raw, "requests_per_15min", "x.budget", 0),
                posts_per_month=self.integer(budget_raw, "posts_per_month", "x.budget", 0),
            ),
        )

    def bluesky(self, value: Any) -> BlueskyConfig:
        key = "bluesky"
        raw = self.mapping(value, key, ("plc_url", "appview_url", "poll_interval", "timeout", "max_media_bytes",
                                        "media_download_deadline"))
        return BlueskyConfig(
            plc_url=self.url(raw, "plc_url", key, DEFAULT_PLC),
            appview_url=self.url(raw, "appview_url", key, DEFAULT_APPVIEW),
            poll_interval=self.duration(raw, "poll_interval", key, BlueskyConfig.poll_interval, minimum=10),
            timeout=self.seconds(raw, "timeout", key, 30.0, minimum=1),
            max_media_bytes=self.integer(raw, "max_media_bytes", key, BlueskyConfig.max_media_bytes, minimum=1),
            media_download_deadline=self.duration(
                raw, "media_download_deadline", key, BlueskyConfig.media_download_deadline, minimum=1
            ),
        )

    def mastodon(self, value: Any) -> MastodonConfig:
        key = "mastodon"
        raw = self.mapping(value, key, ("default_instance", "client_name", "website", "timeout", "media_poll_timeout"))
        return MastodonConfig(
            default_instance=self.url(raw, "default_instance", key, DEFAULT_INSTANCE),
            client_name=self.string(raw, "client_name", key, "geno-bridge") or "geno-bridge",
            website=self.string(raw, "website", key, ""),
            timeout=self.seconds(raw, "timeout", key, 30.0, minimum=1),
            media_poll_timeout=self.seconds(raw, "media_poll_timeout", key, 300.0, minimum=1),
        )

    def daemon(self, value: Any) -> DaemonConfig:
        key = "daemon"
        raw = self.mapping(value, key, ("concurrency", "shutdown_grace", "jitter", "refresh_interval", "status_file"))
        return DaemonConfig(
            concurrency=self.integer(raw, "concurrency", key, 4, minimum=1, maximum=MAX_CONCURRENCY),
            shutdown_grace=self.seconds(raw, "shutdown_grace", key, 30.0),
            jitter=self.duration(raw, "jitter", key, 30, minimum=0),
            refresh_interval=self.duration(raw, "refresh_interval", key, 60, minimum=1),
            status_file=self.string(raw, "status_file", key, ""),
        )

    def feed(self, value: Any) -> FeedConfig:
        key = "feed"
        raw = self.mapping(value, key, ("post", "categories_as_hashtags", "poll_interval", "timeout", "deadline", "max_bytes",
                                        "max_decoded_bytes", "max_media_bytes"))
        d = FeedConfig()
        return FeedConfig(
            post=self.choice(raw, "post", key, d.post, FEED_POST_MODES),
            categories_as_hashtags=self.boolean(raw, "categories_as_hashtags", key, d.categories_as_hashtags),
            poll_interval=self.duration(raw, "poll_interval", key, d.poll_interval, minimum=10),
            timeout=self.seconds(raw, "timeout", key, d.timeout, minimum=1),
            deadline=self.seconds(raw, "deadline", key, d.deadline, minimum=1),
            max_bytes=self.integer(raw, "max_bytes", key, d.max_bytes, minimum=1024),
            max_decoded_bytes=self.integer(raw, "max_decoded_bytes", key, d.max_decoded_bytes, minimum=1024),
            max_media_bytes=self.integer(raw, "max_media_bytes", key, d.max_media_bytes, minimum=1024),
        )

    def web(self, value: Any) -> WebConfig:
        key = "web"
        raw = self.mapping(value, key, ("host", "port", "public_url", "secret", "secret_file", "operator_token",
                                        "operator_token_file", "secure_cookies", "invite_days", "max_upload_bytes",
                                        "rate_limit", "backfill_pace"))
        d = WebConfig()
        public = self.url(raw, "public_url", key, "http://unset") if raw.get("public_url") else ""
        return WebConfig(
            host=self.string(raw, "host", key, d.host) or d.host,
            port=self.integer(raw, "port", key, d.port, minimum=1, maximum=65535),
            public_url=public,
            secret=self.secret(raw, "secret", key),
            operator_token=self.secret(raw, "operator_token", key),
            secure_cookies=self.boolean(raw, "secure_cookies", key, d.secure_cookies),
            invite_days=self.integer(raw, "invite_days", key, d.invite_days, minimum=1, maximum=90),
            max_upload_bytes=self.integer(raw, "max_upload_bytes", key, d.max_upload_bytes, minimum=1024),
            rate_limit=self.integer(raw, "rate_limit", key, d.rate_limit, minimum=1),
            backfill_pace=None if raw.get("backfill_pace") in (None, "auto")
            else self.seconds(raw, "backfill_pace", key, 0.0),
        )

    def policy(self, value: Any, key: str, base: Policy) -> Policy:
        raw = self.mapping(
            value,
            key,
            ("visibility", "retweets", "quotes", "replies", "mentions", "footer", "content_warning", "thread_counters",
             "date_prefix", "max_thread_parts", "feed", "edits_where_impossible"),
        )
        feed_raw = self.mapping(raw.get("feed"), f"{key}.feed", ("post", "categories_as_hashtags"))
        vis_raw = self.mapping(raw.get("visibility"), f"{key}.visibility", tuple(f.name for f in fields(VisibilityPolicy)))
        visibilities: dict[str, Any] = {
            name: self.choice(vis_raw, name, f"{key}.visibility", getattr(base.visibility, name), VISIBILITIES) for name in vis_raw
        }
        visibility = replace(base.visibility, **visibilities)
        mentions_raw = self.mapping(raw.get("mentions"), f"{key}.mentions", ("unmapped", "map"))
        mention_map = dict(base.mention_map)
        map_raw = mentions_raw.get("map")
        if map_raw is not None:
            if not isinstance(map_raw, dict):
                raise self.fail(f"{key}.mentions.map", f"expected a mapping of X handle to user@instance, got {_kind(map_raw)}")
            for handle, target in map_raw.items():
                where = f"{key}.mentions.map.{handle}"
                if not isinstance(target, str) or not re.fullmatch(r"@?[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", target):
                    raise self.fail(where, f"expected a fediverse account like user@instance.social, got {target!r}")
                mention_map[str(handle).lstrip("@").lower()] = target.lstrip("@")
        return Policy(
            visibility=visibility,
            retweets=self.choice(raw, "retweets", key, base.retweets, ("auto", "boost", "link", "skip")),  # type: ignore[arg-type]
            quotes=self.choice(raw, "quotes", key, base.quotes, ("auto", "link", "skip")),  # type: ignore[arg-type]
            replies=self.choice(raw, "replies", key, base.replies, ("self", "all", "none")),  # type: ignore[arg-type]
            mentions_unmapped=self.choice(mentions_raw, "unmapped", f"{key}.mentions", base.mentions_unmapped, ("plain", "domain", "link")),  # type: ignore[arg-type]
            mention_map=tuple(sorted(mention_map.items())),
            footer=self.string(raw, "footer", key, base.footer),
            content_warning=self.string(raw, "content_warning", key, base.content_warning),
            thread_counters=self.boolean(raw, "thread_counters", key, base.thread_counters),
            date_prefix=self.boolean(raw, "date_prefix", key, base.date_prefix),
            max_thread_parts=self.integer(raw, "max_thread_parts", key, base.max_thread_parts, minimum=1),
            feed_post=self.choice(feed_raw, "post", f"{key}.feed", base.feed_post, FEED_POST_MODES),  # type: ignore[arg-type]
            feed_categories=self.boolean(feed_raw, "categories_as_hashtags", f"{key}.feed", base.feed_categories),
            edits_where_impossible=self.choice(raw, "edits_where_impossible", key, base.edits_where_impossible, EDIT_MODES),  # type: ignore[arg-type]
        )


def _number(value: float) -> str:
    """A number for a message: a 400-digit typo is shown by its size, not in full."""
    text = str(value)
    return text if len(text) <= 20 else f"a {len(text)}-digit number"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing"
    return type(value).__name__


# ---------------------------------------------------------------------------
# Showing the effective configuration


def mask(secret: str) -> str:
    """Show that a secret is set without showing it."""
    if not secret:
        return "(not set)"
    return f"***{len(secret)} characters***"


def mask_url(url: str) -> str:
    """The URL with any credentials in it (``https://user:pass@host``) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def effective(config: Config) -> dict[str, Any]:
    """The configuration as plain data, secrets masked: what `check-config` prints."""

    def policy(p: Policy) -> dict[str, Any]:
        return {
            "visibility": {f.name: getattr(p.visibility, f.name) for f in fields(VisibilityPolicy)},
            "retweets": p.retweets,
            "quotes": p.quotes,
            "replies": p.replies,
            "mentions": {"unmapped": p.mentions_unmapped, "map": dict(p.mention_map)},
            "footer": p.footer,
            "content_warning": p.content_warning,
            "thread_counters": p.thread_counters,
            "date_prefix": p.date_prefix,
            "max_thread_parts": p.max_thread_parts,
            "feed": {"post": p.feed_post, "categories_as_hashtags": p.feed_categories},
            "edits_where_impossible": p.edits_where_impossible,
        }

    x = config.x
    return {
        "config_file": str(config.path) if config.path else None,
        "database": str(config.database),
        "log_format": config.log_format,
        "x": {
            "bearer_token": mask(x.bearer_token),
            "api_base_url": mask_url(x.api_base_url),
            "media_hosts": list(x.media_hosts),
            "poll_interval": x.poll_interval,
            "max_poll_interval": x.max_poll_interval,
            "timeout": x.timeout,
            "max_media_bytes": x.max_media_bytes,
            "media_download_deadline": x.media_download_deadline,
            "budget": {"requests_per_15min": x.budget.requests_per_15min, "posts_per_month": x.budget.posts_per_month},
        },
        "bluesky": {
            "plc_url": mask_url(config.bluesky.plc_url),
            "appview_url": mask_url(config.bluesky.appview_url),
            "poll_interval": config.bluesky.poll_interval,
            "timeout": config.bluesky.timeout,
            "max_media_bytes": config.bluesky.max_media_bytes,
            "media_download_deadline": config.bluesky.media_download_deadline,
        },
        "mastodon": {
            "default_instance": mask_url(config.mastodon.default_instance),
            "client_name": config.mastodon.client_name,
            "website": config.mastodon.website,
            "timeout": config.mastodon.timeout,
            "media_poll_timeout": config.mastodon.media_poll_timeout,
        },
        "daemon": {
            "concurrency": config.daemon.concurrency,
            "shutdown_grace": config.daemon.shutdown_grace,
            "jitter": config.daemon.jitter,
            "refresh_interval": config.daemon.refresh_interval,
            "status_file": str(config.heartbeat_path),
        },
        "web": {
            "host": config.web.host,
            "port": config.web.port,
            "public_url": config.web.base_url,
            "secret": mask(config.web.secret),
            "operator_token": mask(config.web.operator_token),
            "secure_cookies": config.web.secure_cookies,
            "invite_days": config.web.invite_days,
            "max_upload_bytes": config.web.max_upload_bytes,
            "rate_limit": config.web.rate_limit,
            "backfill_pace": "auto" if config.web.backfill_pace is None else config.web.backfill_pace,
        },
        "defaults": policy(config.defaults),
        "organisations": {name: policy(p) for name, p in config.organisations.items()},
    }
