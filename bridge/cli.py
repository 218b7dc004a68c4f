"""The `bridge` command: a thin click layer over the library.

It turns our errors into one clear line and an exit code: 0 ok, 1 runtime
failure, 2 usage or configuration error. No command prints a traceback for a
problem the user can fix.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import yaml

from bridge import __version__
from bridge.config import Config, effective, load_config
from bridge.errors import AuthError, BridgeError, ConfigError, PermanentError, SourceError, TransientError, XAuthError
from bridge.ledger import Ledger
from bridge.logs import configure as configure_logging
from bridge.logs import masker

if TYPE_CHECKING:
    from bridge.accounts import StartPoint
    from bridge.backfill import Summary
    from bridge.preview import TargetPreview

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BACKFILL_VISIBILITIES = ("public", "unlisted", "private")  # the choices of `bridge backfill --visibility`


class State:
    """What every command shares: the config path and the log format, loaded lazily."""

    def __init__(self, config_path: str | None, log_format: str | None) -> None:
        self.config_path = config_path
        self.log_format = log_format
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
            configure_logging(self.log_format or self._config.log_format)
            masker.register(*self._config.secrets)
        return self._config

    @contextmanager
    def ledger(self) -> Iterator[Ledger]:
        ledger = Ledger.open(self.config.database)
        try:
            masker.register(*(o.token for o in ledger.list_orgs(include_unlinked=True)))
            yield ledger
        finally:
            ledger.close()


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Map our error kinds to messages and exit codes; keep tracebacks for real bugs only."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, SourceError) as exc:
            fail(str(exc), EXIT_USAGE)
        except XAuthError as exc:
            # X refused the app's bearer token: the configuration must change, not the organisation.
            fail(str(exc), EXIT_USAGE)
        except AuthError as exc:
            fail(f"Mastodon: {exc} (run: bridge relink NAME)", EXIT_FAILURE)
        except BridgeError as exc:
            fail(str(exc), EXIT_FAILURE)
        except KeyboardInterrupt:
            fail("interrupted; nothing was lost, run the command again to continue", 130)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


def now() -> datetime:
    return datetime.now(timezone.utc)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bridge")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="BRIDGE_CONFIG",
    help="Configuration file (default: $BRIDGE_CONFIG, else ./config.yaml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default=None,
    help="Log format: console on a terminal, JSON lines otherwise (auto).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_format: str | None) -> None:
    """geno-bridge: republish cooperatives' X posts on their Mastodon accounts, exactly once.

    \b
    Example:
      bridge --config /etc/geno-bridge/config.yaml status
    """
    ctx.obj = State(config_path, log_format)


pass_state = click.make_pass_decorator(State)


@main.command("check-config")
@pass_state
@handle_errors
def check_config(state: State) -> None:
    """Validate the configuration and print it as it takes effect, secrets masked.

    Exits 0 when the configuration is valid and 2 when it is not.

    \b
    Example:
      bridge --config config.yaml check-config
    """
    config = state.config
    click.echo(yaml.safe_dump(effective(config), sort_keys=False, allow_unicode=True), nl=False)
    click.echo(f"# configuration OK: {config.path}")


@main.command("orgs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
@handle_errors
def orgs(state: State, as_json: bool) -> None:
    """List linked organisations with their state, last delivery and queue counts.

    \b
    Example:
      bridge orgs
    """
    from bridge.report import org_rows

    with state.ledger() as ledger:
        rows = org_rows(ledger)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No organisations linked yet. Link one with: bridge link NAME --x-username HANDLE")
        return
    click.echo(_table(rows, ["name", "x", "fediverse", "state", "last_delivery", "pending", "failed"]))


@main.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--check", is_flag=True, help="Exit 1 when the daemon is unhealthy (for health checks).")
@pass_state
@handle_errors
def status(state: State, name: str | None, as_json: bool, check: bool) -> None:
    """Show how each organisation is doing: state, polls, queue, failures, deferrals.

    With --check, exits 1 when the daemon has had no successful cycle within
    three poll intervals (for systemd, Docker HEALTHCHECK and monitoring).

    \b
    Examples:
      bridge status
      bridge status coop-a --json
      bridge status --check
    """
    from bridge.report import health, status_report

    config = state.config
    with state.ledger() as ledger:
        if name is not None and ledger.get_org(name) is None:
            raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        report = status_report(ledger, config, now(), only=name)
    healthy, reason = health(config, now())
    report["daemon"]["healthy"] = healthy
    report["daemon"]["health_reason"] = reason
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(_render_status(report))
    if check and not healthy:
        click.echo(f"unhealthy: {reason}", err=True)
        sys.exit(EXIT_FAILURE)


@main.command("link")
@click.argument("name")
@click.option("--x-username", help="The cooperative's X handle (with or without @).")
@click.option("--x-user-id", help="The numeric X user id; skips the lookup (only with --x-username).")
@click.option("--feed", "feed_url", help="Read the website's feed: the feed's URL, or the homepage"
              " (its feed is found through <link rel=\"alternate\">).")
@click.option("--bluesky", "bluesky_name", help="Read a Bluesky account: its handle (coop.bsky.social) or DID.")
@click.option("--instance", help="Mastodon instance URL (default: mastodon.default_instance).")
@click.option("--code", help="The authorisation code the volunteer got (otherwise asked at a prompt).")
@click.option("--access-token", help="Use an existing Mastodon access token instead of OAuth; it is verified first.")
@click.option("--yes", is_flag=True, help="Update an already-linked organisation (or replace its feed or Bluesky"
              " account) without asking; with several feeds on a page, take the first.")
@click.option("--bluesky-target", "bluesky_target", metavar="HANDLE",
              help="Also post to this Bluesky account (an organisation already linked); asks for an app password.")
@click.option("--app-password-file", type=click.Path(dir_okay=False), help="With --bluesky-target: a file holding"
              " the Bluesky app password (else it is asked at a hidden prompt; never give it on the command line).")
@pass_state
@handle_errors
def link_cmd(state: State, name: str, x_username: str | None, x_user_id: str | None, feed_url: str | None,
             bluesky_name: str | None, instance: str | None, code: str | None, access_token: str | None,
             yes: bool, bluesky_target: str | None = None, app_password_file: str | None = None) -> None:
    """Link an organisation's X account, website feed or Bluesky account to its Mastodon account, once.

    Prints a link for the cooperative's volunteer, who logs in on the
    Mastodon instance and clicks Authorize; nobody handles a password. The
    bridge then starts from the newest existing post, so nothing old floods
    the timeline (history can be brought over with `bridge backfill`).

    For an organisation that is linked already, --feed and --bluesky add that
    source to it (its Mastodon account stays; no new authorisation).

    \b
    Examples:
      bridge link wohnen-eg --x-username WohnenEG
      bridge link wohnen-eg --x-username WohnenEG --instance https://geno.social --code ABC123
      bridge link wohnen-eg --x-username WohnenEG --access-token "$TOKEN"
      bridge link baeckerei --feed https://baeckerei.example/ --instance https://geno.social
      bridge link solarcoop --bluesky solarcoop.bsky.social
      bridge link wohnen-eg --bluesky wohnen-eg.bsky.social   (a second source)
      bridge link wohnen-eg --bluesky-target wohnen-eg.bsky.social   (also post there)
    """
    from bridge import accounts, link

    if bluesky_target is not None or app_password_file is not None:
        _link_bluesky_target(state, name, bluesky_target, app_password_file,
                             others=any(v is not None for v in (x_username, x_user_id, feed_url, bluesky_name, instance,
                                                                code, access_token)))
        return
    given = [o for o, v in (("--x-username", x_username), ("--feed", feed_url), ("--bluesky", bluesky_name)) if v is not None]
    if len(given) != 1:
        said = "neither was given" if not given else f"{' and '.join(given)} were given"
        raise click.UsageError("give either --x-username (an X account), --feed (a website's feed) or --bluesky"
                               f" (a Bluesky account); {said}")
    if x_user_id is not None and x_username is None:
        raise click.UsageError(f"--x-user-id is the id of the X account given with --x-username; it means nothing with {given[0]}")
    config = state.config
    _check_name(name)
    if feed_url is not None or bluesky_name is not None:
        _link_source(state, name, "feed" if feed_url is not None else "bluesky", feed_url or bluesky_name or "",
                     instance, code, access_token, yes)
        return
    assert x_username is not None
    with state.ledger() as ledger:
        existing = ledger.get_org(name)
        first = ledger.get_source(name)
        if existing is not None and existing.state != "unlinked" and first is not None and first.kind != "x":
            raise ConfigError(f"organisation {name!r} reads {accounts.source_label(first.kind, first.account_id, first.handle)};"
                              " an X account can not be added to it yet: link the X account as its own organisation")
        if existing is not None and existing.state != "unlinked" and not yes:
            if not click.confirm(f"Organisation {name!r} is already linked (@{existing.x_username} -> @{existing.acct}). Update it?", default=False):
                fail("nothing changed", EXIT_FAILURE)
        base = link.check_instance(instance or config.mastodon.default_instance, timeout=config.mastodon.timeout)
        x_user = accounts.resolve_x_user(config, x_username, x_user_id)
        # Where the bridge starts on X, read before the volunteer's single-use code is spent:
        # when X cannot be reached the command stops here and stores nothing (no cursor, no flood).
        start = None if ledger.get_cursor(name) else _start_point(config, name, x_user.id)
        token = access_token or _oauth(state, ledger, base, code)
        masker.register(token)
        account = link.verify_token(base, token, timeout=config.mastodon.timeout)
        outcome = accounts.store_link(ledger, config, name, x_user, base, token, account, now(), start=start)
    verb = "Updated" if outcome.updated else "Linked"
    click.echo(f"{verb} {name}: X @{x_user.username} (id {x_user.id}) -> @{outcome.org.acct} on {base}")
    if start is not None and not start.has_posts:
        click.echo(f"X @{x_user.username} has no posts yet: every post from now on will be bridged.")
    elif outcome.cursor:
        click.echo(f"New posts after X post {outcome.cursor} will be bridged; older posts are not posted.")
        click.echo(
            f"Older posts (up to {outcome.backfillable:,} via the X API, or all of them from the X archive) can be brought over with:\n"
            f"  bridge backfill {name} --archive twitter-archive.zip --dry-run\n"
            f"  bridge backfill {name} --api --dry-run"
        )


class _Start:
    """What linking a feed or Bluesky account read before anything is stored: the account and its start cursor."""

    def __init__(self, kind: str, account_id: str, handle: str, cursor: str, said: str, start_line: str) -> None:
        self.kind, self.account_id, self.handle, self.cursor = kind, account_id, handle, cursor
        self.said = said  # "feed 'Title' (URL)", "Bluesky @handle (did:plc:...)"
        self.start_line = start_line  # what is not posted, and from when on posts are


def _feed_start(config: Config, url: str, yes: bool) -> _Start:
    """Find the feed (asking which one when a page offers several) and mark what it holds now as old."""
    from bridge.sources.feed import FeedSource, discover

    source = FeedSource(config.feed)
    try:
        found = discover(source, url)
        if not found:
            raise SourceError(f"no feed at {url}: it is not a feed, and its page names none with <link rel=\"alternate\">;"
                              " give the feed's own URL")
        choice = 1
        if len(found) > 1:
            click.echo(f"{url} offers {len(found)} feeds:")
            for i, (feed, title) in enumerate(found, 1):
                click.echo(f"  {i}. {title or '(no title)'}  {feed}")
            if yes:
                click.echo("Taking the first (--yes).")
            else:
                choice = click.prompt("Which one", type=click.IntRange(1, len(found)), default=1)
        cursor, meta = source.start_cursor(found[choice - 1][0])
    finally:
        source.close()
    feed_url, title = meta["url"], meta["title"] or found[choice - 1][1] or meta["url"]
    return _Start("feed", feed_url, title, cursor, f"feed {title!r} ({feed_url})",
                  f"The {meta['entries']} entries in the feed now are not posted; new entries will be.")


def _bluesky_start(config: Config, name: str) -> _Start:
    """Resolve the handle (or DID) to its DID and PDS and read the newest post: nothing stored yet."""
    from bridge.sources.bluesky import bluesky_source

    with bluesky_source(config) as source:
        acct = source.resolve(name)
        cursor, info = source.start_cursor(acct.did)
    newest = info["newest"]
    if newest is None:
        line = f"Bluesky @{acct.handle} has no posts yet: every post from now on will be bridged."
    else:
        line = (f"New posts after its newest post {newest['rkey']} ({newest['text']!r}) will be bridged;"
                " older posts are not posted.")
    return _Start("bluesky", acct.did, acct.handle, cursor, f"Bluesky @{acct.handle} ({acct.did}, PDS {acct.pds})", line)


def _link_source(state: State, name: str, kind: str, given: str, instance: str | None, code: str | None,
                 access_token: str | None, yes: bool) -> None:
    """`bridge link NAME --feed URL | --bluesky HANDLE`: read the source first, then add it to a linked
    organisation (no authorisation) or link a new organisation to its Mastodon account."""
    from bridge import accounts, link

    config = state.config
    with state.ledger() as ledger:
        existing = ledger.get_org(name)
        if existing is not None and existing.state != "unlinked":
            for option, value in (("--instance", instance), ("--code", code), ("--access-token", access_token)):
                if value is not None:
                    raise click.UsageError(
                        f"{option}: organisation {name!r} is linked already (to @{existing.acct}); the source is added to"
                        f" it without a new authorisation (to authorise again: bridge relink {name})")
            _add_source(config, ledger, name, existing.acct, kind, given, yes)
            return
        base = link.check_instance(instance or config.mastodon.default_instance, timeout=config.mastodon.timeout)
        # Read before the volunteer's single-use code is spent: a bad feed or an unknown account stops here,
        # and nothing is stored.
        start = _read_start(config, name, kind, given, yes)
        token = access_token or _oauth(state, ledger, base, code)
        masker.register(token)
        account = link.verify_token(base, token, timeout=config.mastodon.timeout)
        outcome = accounts.store_source_link(ledger, name, kind, start.account_id, start.handle, base, token, account,
                                             now(), start.cursor)
    verb = "Updated" if outcome.updated else "Linked"
    click.echo(f"{verb} {name}: {start.said} -> @{outcome.org.acct} on {base}")
    click.echo(start.start_line)


def _read_start(config: Config, name: str, kind: str, given: str, yes: bool) -> _Start:
    try:
        return _feed_start(config, given, yes) if kind == "feed" else _bluesky_start(config, given)
    except TransientError as exc:
        raise TransientError(f"{exc}; {name} was not linked (nothing stored): run the link command again later") from None
    except PermanentError as exc:  # what was given can never work (not a handle, a did:web with a path)
        raise ConfigError(str(exc)) from None


def _add_source(config: Config, ledger: Ledger, name: str, acct: str, kind: str, given: str, yes: bool) -> None:
    """Add (or replace) a feed or Bluesky source of a linked organisation; its Mastodon account stays."""
    from bridge import accounts

    start = _read_start(config, name, kind, given, yes)
    current = accounts.source_of_kind(ledger, name, kind)
    if current is not None and current.account_id != start.account_id and not yes:
        was = accounts.source_label(current.kind, current.account_id, current.handle)
        if not click.confirm(f"Organisation {name!r} reads {was}. Replace it with {start.said}?", default=False):
            fail("nothing changed", EXIT_FAILURE)
    outcome = accounts.add_source(ledger, name, kind, start.account_id, start.handle, start.cursor, now())
    if not outcome.added:
        click.echo(f"{name} reads {start.said} already (source {outcome.source!r}); nothing changed.")
        return
    if outcome.replaced is not None:
        was = accounts.source_label(outcome.replaced.kind, outcome.replaced.account_id, outcome.replaced.handle)
        click.echo(f"Replaced {was} of {name} with {start.said} (source {outcome.source!r}).")
    else:
        click.echo(f"Added {start.said} to {name} as source {outcome.source!r}: its posts go to @{acct}"
                   " (linked already, no new authorisation).")
    click.echo(start.start_line)


def _link_bluesky_target(state: State, name: str, handle: str | None, password_file: str | None, *, others: bool) -> None:
    """`bridge link NAME --bluesky-target HANDLE`: a Bluesky account as a second target (bridge/link_bluesky.py)."""
    from bridge import link_bluesky

    if handle is None or others:
        raise click.UsageError("--bluesky-target HANDLE (with --app-password-file, or a prompt) adds a Bluesky target to an"
                               " organisation already linked; give it without the source and Mastodon options")
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--app-password-file {password_file}: cannot read it ({exc})") from None
        password = link_bluesky.read_app_password(text, f"--app-password-file {password_file}")
    else:
        click.echo("Make an app password in Bluesky: Settings > Privacy and security > App passwords > Add App Password.")
        password = link_bluesky.read_app_password(click.prompt("App password", hide_input=True), "the app password")
    masker.register(password)
    _check_name(name)
    with state.ledger() as ledger:
        linked = link_bluesky.link_target(ledger, state.config, name, handle, password, now())
    verb = "Updated" if linked.updated else "Linked"
    click.echo(f"{verb} {name}: its new posts also go to Bluesky @{linked.handle} ({linked.did} on {linked.pds}).")
    click.echo("Posts recorded before this link are not posted there. Revoke the app password in Bluesky to stop it.")


def _start_point(config: Config, name: str, x_user_id: str) -> StartPoint:
    from bridge import accounts

    try:
        return accounts.start_point(config, x_user_id, now())
    except TransientError as exc:
        raise TransientError(f"{exc}; {name} was not linked (nothing stored): run the link command again later") from None


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ConfigError(f"NAME: {name!r} is not a valid organisation name (letters, digits, '-', '_', '.'; up to 64)")


def _oauth(state: State, ledger: Ledger, base: str, code: str | None) -> str:
    from bridge import link

    config = state.config
    app = link.ensure_app(base, config.mastodon.client_name, ledger, website=config.mastodon.website or None,
                          timeout=config.mastodon.timeout)
    request = link.authorization_request(app, timeout=config.mastodon.timeout)
    if code is None:
        click.echo(link.plain_instructions(request.url, base))
        code = click.prompt("Authorisation code", hide_input=False).strip()
    return link.exchange_code(app, code, request, timeout=config.mastodon.timeout)


@main.command("relink")
@click.argument("name")
@click.option("--code", help="The new authorisation code (otherwise asked at a prompt).")
@click.option("--access-token", help="Use an existing Mastodon access token instead of OAuth.")
@pass_state
@handle_errors
def relink_cmd(state: State, name: str, code: str | None, access_token: str | None) -> None:
    """Authorise an organisation again (after `needs_relink`), keeping its ledger and cursor.

    \b
    Example:
      bridge relink wohnen-eg
    """
    from bridge import link
    from bridge.sources.x_api import XUser

    config = state.config
    with state.ledger() as ledger:
        org = ledger.get_org(name)
        if org is None:
            raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        token = access_token or _oauth(state, ledger, org.instance, code)
        masker.register(token)
        account = link.verify_token(org.instance, token, timeout=config.mastodon.timeout)
        if org.account_id and account.account_id != org.account_id:
            raise ConfigError(
                f"the authorised account @{account.full_acct} is not the organisation's account @{org.acct};"
                " log in as the organisation's account (or unlink and link again to change accounts)"
            )
        from bridge import accounts

        source = ledger.get_source(name)
        if source is not None and source.kind != "x":  # a feed or Bluesky organisation stays one, its cursor kept
            accounts.store_source_link(ledger, name, source.kind, org.x_user_id, org.x_username, org.instance, token,
                                       account, now(), source.cursor or "")
        else:
            accounts.store_link(ledger, config, name, XUser(org.x_user_id, org.x_username, org.x_username),
                                org.instance, token, account, now())
    click.echo(f"Relinked {name}: @{account.full_acct} is active again; pending posts go out on the next cycle.")


@main.command("unlink")
@click.argument("name")
@click.option("--keep-history", is_flag=True, help="Keep the ledger rows, so a later link never re-posts anything.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
@handle_errors
def unlink_cmd(state: State, name: str, keep_history: bool, yes: bool) -> None:
    """Revoke the organisation's token at its instance and remove it.

    \b
    Example:
      bridge unlink wohnen-eg --keep-history
    """
    from bridge import accounts

    with state.ledger() as ledger:
        if ledger.get_org(name) is None:
            raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        if not yes and not click.confirm(f"Unlink {name} and revoke its token?", default=False):
            fail("nothing changed", EXIT_FAILURE)
        revoked = accounts.unlink(ledger, state.config, name, keep_history=keep_history, now=now())
    click.echo(f"Unlinked {name}" + ("; the token was revoked" if revoked else "; the token could not be revoked at the instance")
               + ("; its history is kept" if keep_history else ""))


@main.command("poll")
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the drafts; post and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print drafts as JSON.")
@pass_state
@handle_errors
def poll_cmd(state: State, names: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Run one poll-and-deliver cycle for some or all organisations, then exit.

    \b
    Examples:
      bridge poll
      bridge poll wohnen-eg --dry-run
    """
    from bridge.mediatmp import clean_stale
    from bridge.pipeline import Pipeline
    from bridge.render import render_json, render_text

    config = state.config
    clean_stale()  # media folders of a killed run (bridge.mediatmp)
    with state.ledger() as ledger, Pipeline(config, ledger) as pipeline:
        selected = list(names) or [o.name for o in ledger.list_orgs() if o.state == "active"]
        for name in selected:
            if ledger.get_org(name) is None:
                raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        failed = False
        out: list[Any] = []
        for name in selected:
            if dry_run:
                for post, conversion in pipeline.preview_new(name):
                    if as_json:
                        out.append({"org": name, "post_id": post.id, "drafts": render_json(conversion), "skipped": conversion.skipped})
                    else:
                        click.echo(f"== {name}: post {post.id}")
                        click.echo(render_text(conversion))
                continue
            result = pipeline.cycle(name)
            failed = failed or bool(result.error)
            click.echo(
                f"{name}: fetched {result.fetched}, delivered {result.delivered}, skipped {result.skipped}, failed {result.failed}"
                + (f"; {result.error}" if result.error else "")
            )
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    if failed:
        sys.exit(EXIT_FAILURE)


@main.command("retry")
@click.argument("name")
@click.option("--post", "post_id", help="Retry one failed post.")
@click.option("--all-failed", is_flag=True, help="Retry every failed post of the organisation.")
@click.option("--target", "target", help="Only on this target of the organisation (its name, as `bridge status`"
              " shows it); default: on every target where it failed.")
@pass_state
@handle_errors
def retry_cmd(state: State, name: str, post_id: str | None, all_failed: bool, target: str | None) -> None:
    """Put failed posts back in the queue; the next cycle delivers them in order.

    \b
    Examples:
      bridge retry wohnen-eg --post 1893456789012345678
      bridge retry wohnen-eg --all-failed
      bridge retry wohnen-eg --all-failed --target bluesky
    """
    if bool(post_id) == all_failed:
        raise ConfigError("give exactly one of --post ID or --all-failed")
    with state.ledger() as ledger:
        if ledger.get_org(name) is None:
            raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        names = [t.name for t in ledger.targets(name, include_unlinked=True)]
        if target is not None and target not in names:
            raise ConfigError(f"--target: organisation {name} has no target {target!r} (its targets: {', '.join(names)})")
        if post_id is not None:
            rows = [r for s in ledger.sources(name, include_unlinked=True) for t in ([target] if target else names)
                    if (r := ledger.get_post(name, post_id, source=s.name, target=t)) is not None]
            if not rows:
                where = f" on target {target}" if target else ""
                raise ConfigError(f"--post: organisation {name} has no post {post_id}{where}")
            if not any(r.state == "failed" for r in rows):
                states = ", ".join(sorted({r.state for r in rows}))
                raise ConfigError(f"--post: post {post_id} is {states}, not failed; only failed posts are retried")
        n = ledger.reopen(name, post_id, now(), source=None, target=target)
    on = f" on {target}" if target else ""
    click.echo(f"{n} post(s) of {name} queued again{on}; they go out on the next cycle (or run: bridge poll {name})")


@main.command("preview")
@click.option("--archive", "archive_path", type=click.Path(exists=True), help="An X archive (.zip or folder).")
@click.option("--org", "org_name",
              help="A linked organisation: its policies and instance limits apply; without --archive the post is read from X.")
@click.option("--feed", "feed_url", help="A website's feed: --post is then the entry's guid/id (or its link).")
@click.option("--bluesky", "bluesky_name", help="A Bluesky account (handle or DID): --post is then the post's record key,"
              " at:// URI or bsky.app URL.")
@click.option("--post", "post_id", required=True,
              help="The X post id (with --feed, the entry's id; with --bluesky, the post's record key or URI).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the drafts as a JSON list; a skipped post prints an object with its reason instead.")
@pass_state
@handle_errors
def preview_cmd(state: State, archive_path: str | None, org_name: str | None, feed_url: str | None,
                bluesky_name: str | None, post_id: str, as_json: bool) -> None:
    """Print exactly what would be posted for one X post, draft by draft, with counted lengths.

    A post of a linked organisation (--org without --archive, --feed or
    --bluesky) is shown for each of its targets, each named ("=== target
    NAME: ACCOUNT"); with --json each draft carries its "target".

    An archive post is shown as `bridge backfill` would post it: with --org,
    under that organisation's policies and its instance's limits; without,
    under the configuration's defaults.

    \b
    Examples:
      bridge preview --archive twitter-archive.zip --post 1893456789012345678
      bridge preview --archive twitter-archive.zip --org wohnen-eg --post 1893456789012345678
      bridge preview --org wohnen-eg --post 1893456789012345678 --json
      bridge preview --feed https://baeckerei.example/feed/ --post "https://baeckerei.example/?p=412"
      bridge preview --bluesky solarcoop.bsky.social --post 3lbq5dvwcbk2a --org solarcoop
    """
    from bridge.preview import preview_archive_post, preview_bluesky_post, preview_feed_post, preview_live_post
    from bridge.render import render_json, render_text

    if not archive_path and not org_name and not feed_url and not bluesky_name:
        raise ConfigError("give --archive PATH, --feed URL or --bluesky HANDLE (with --org NAME for that organisation's"
                          " policies) or --org NAME")
    given = [o for o, v in (("--archive", archive_path), ("--feed", feed_url), ("--bluesky", bluesky_name)) if v]
    if len(given) > 1:
        raise ConfigError(f"give one of --archive, --feed or --bluesky, not {' and '.join(given)}")
    config = state.config
    with state.ledger() as ledger:
        if bluesky_name:
            conversion, limit = preview_bluesky_post(config, ledger, bluesky_name, post_id, org_name)
        elif feed_url:
            conversion, limit = preview_feed_post(config, ledger, feed_url, post_id, org_name)
        elif archive_path:
            conversion, limit = preview_archive_post(config, ledger, archive_path, post_id, org_name)
        else:
            _echo_target_previews(preview_live_post(config, ledger, org_name or "", post_id), post_id, as_json)
            return
    if as_json and conversion.skipped:
        # Not a bare []: a script (and a person) needs to see why nothing would be posted.
        skipped = {"post_id": post_id, "skipped": conversion.skipped, "notes": list(conversion.notes), "drafts": []}
        click.echo(json.dumps(skipped, indent=2, ensure_ascii=False))
    elif as_json:
        click.echo(json.dumps(render_json(conversion), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(conversion, limit))


def _echo_target_previews(previews: list[TargetPreview], post_id: str, as_json: bool) -> None:
    """A recorded or live post of an organisation, for each of its targets, each named."""
    from bridge.render import draft_to_dict, render_text

    if as_json:
        shown = [p for p in previews if not p.conversion.skipped]
        if not shown:  # skipped everywhere: why, as for one target
            first = previews[0].conversion
            click.echo(json.dumps({"post_id": post_id, "skipped": first.skipped, "notes": list(first.notes), "drafts": [],
                                   "targets": [p.name for p in previews]}, indent=2, ensure_ascii=False))
            return
        drafts = [{**draft_to_dict(d), "target": p.name} for p in shown for d in p.conversion.drafts]
        click.echo(json.dumps(drafts, indent=2, ensure_ascii=False))
        return
    click.echo("\n".join(f"=== target {p.name}: {p.account}\n{render_text(p.conversion, p.max_characters)}"
                           for p in previews))


@main.command("run")
@pass_state
@handle_errors
def run_cmd(state: State) -> None:
    """Run the daemon: poll every linked organisation on its schedule until stopped.

    SIGTERM/SIGINT stop it cleanly, SIGHUP reloads the configuration.

    \b
    Example:
      bridge --config /etc/geno-bridge/config.yaml run
    """
    from bridge.daemon import run

    sys.exit(run(state.config_path, state.log_format))


@main.command("web")
@click.option("--host", help="Address to listen on (default: web.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: web.port).")
@pass_state
@handle_errors
def web_cmd(state: State, host: str | None, port: int | None) -> None:
    """Run the self-service web pages: invitations, linking, each organisation's page, the operator page.

    Listens on 127.0.0.1 by default; put a reverse proxy with TLS in front (README).

    \b
    Example:
      bridge --config /etc/geno-bridge/config.yaml web
    """
    from bridge.web.server import serve

    sys.exit(serve(state.config, host=host, port=port))


@main.command("invite")
@click.argument("name")
@pass_state
@handle_errors
def invite_cmd(state: State, name: str) -> None:
    """Print a single-use, signed link that lets an organisation's volunteer link it in the browser.

    The link expires after web.invite_days (7 by default). Inviting a linked
    organisation again lets it sign in anew (e.g. after needs_relink).

    \b
    Example:
      bridge invite wohnen-eg
    """
    from bridge.web.flows import make_invitation

    _check_name(name)
    with state.ledger() as ledger:
        invitation = make_invitation(state.config, ledger, name, now())
    click.echo(f"Invitation for {name}, valid once until {invitation.expires_at:%Y-%m-%d %H:%M} UTC:")
    click.echo(invitation.url)


@main.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo's state folder and print where it is.")
def demo_cmd(keep: bool) -> None:
    """Run the bridge end to end on built-in local stand-ins; no credentials needed.

    Starts a local Mastodon stand-in (mastodon-mock) and a fake X API serving a
    sample cooperative's posts, links two demo cooperatives, runs poll cycles
    while new posts appear, and prints the resulting toots and the status table.

    \b
    Example:
      bridge demo
    """
    try:
        import geno_bridge_standins  # noqa: F401  (a separate distribution: the runtime image has none)
    except ImportError:
        fail("bridge demo needs the local stand-ins (geno-bridge-standins), which are not installed:"
             " run python3 dev.py demo in a clone of geno-bridge, or pip install -e ./standins there", EXIT_USAGE)
    from bridge.demo import run_demo

    sys.exit(run_demo(keep=keep))


@main.command("backfill")
@click.argument("name")
@click.option("--archive", "archive_path", type=click.Path(path_type=Path), help="The X archive: the .zip X sent, or its extracted folder.")
@click.option("--api", is_flag=True, help="Read from the X API instead (the 3,200 most recent posts at most; costs X reads).")
@click.option("--since", help="Only posts from this date on (YYYY-MM-DD or ISO 8601 time, UTC).")
@click.option("--until", help="Only posts up to this date, inclusive (YYYY-MM-DD or ISO 8601 time, UTC).")
@click.option("--limit", type=int, help="At most N new posts this run (archive: the oldest N; API: the newest N).")
@click.option("--retweets/--no-retweets", default=None, help="Follow the retweet policy, or skip all retweets (default: the organisation's policy).")
@click.option("--replies", type=click.Choice(["self", "all", "none"]), help="Which replies to bring over (default: the organisation's policy).")
@click.option("--visibility", type=click.Choice(BACKFILL_VISIBILITIES), help="Visibility of backfilled toots (default: the policy's visibility.backfill, unlisted).")
@click.option("--date-prefix/--no-date-prefix", default=None, help="Put the original date in front of each post.")
@click.option("--pace", default="auto", show_default=True, help="Seconds to wait after each delivered post, or 'auto' (within Mastodon's limits).")
@click.option("--dry-run", is_flag=True, help="Print the drafts and a summary; post and record nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Accept an archive of a different X account than the organisation's.")
@pass_state
@handle_errors
def backfill_cmd(
    state: State, name: str, archive_path: Path | None, api: bool, since: str | None, until: str | None,
    limit: int | None, retweets: bool | None, replies: str | None, visibility: str | None,
    date_prefix: bool | None, pace: str, dry_run: bool, yes: bool, force: bool,
) -> None:
    """Bring an organisation's older X posts over, oldest first, exactly once.

    From the official X archive (everything, media included, no X costs)
    or from the X API (the 3,200 most recent posts). Posts go through the
    same ledger as the poller, so nothing is ever posted twice; Ctrl-C
    stops after the current post and running the command again continues.

    \b
    Examples:
      bridge backfill wohnen-eg --archive twitter-archive.zip --dry-run
      bridge backfill wohnen-eg --archive twitter-archive.zip --since 2023-01-01 --yes
      bridge backfill wohnen-eg --api --limit 200 --visibility unlisted
    """
    from bridge.backfill import Backfill, BackfillOptions, parse_date, parse_pace, plan_text, summary_text

    options = BackfillOptions(
        archive=archive_path,
        api=api,
        since=parse_date(since, "--since") if since else None,
        until=parse_date(until, "--until", end=True) if until else None,
        limit=limit,
        retweets=retweets,
        replies=replies,
        visibility=visibility,
        date_prefix=date_prefix,
        pace=parse_pace(pace),
        dry_run=dry_run,
        force=force,
    )
    config = state.config
    stop = threading.Event()
    with state.ledger() as ledger, stop_on_signals(stop):
        run = Backfill(config, ledger, name, options, stop=stop)
        plan = run.plan()
        policy = run.bf_config.policy_for(name)
        eta = run.plan_seconds(plan)
        click.echo(plan_text(name, run.org, plan, eta, options, policy))
        if dry_run:
            summary = run.dry_run(click.echo)
            click.echo(summary_text(name, plan, summary, dry_run=True, pace=options.pace))
            return
        if plan.to_deliver == 0:
            click.echo(f"{name}: nothing to bring over.")
            return
        if not yes and not click.confirm(f"Post {plan.to_deliver} posts to @{run.org.acct}?", default=False):
            click.echo("nothing was recorded or posted", err=True)
            sys.exit(EXIT_FAILURE)
        run.record()
        progress = Progress(name, plan.to_deliver, run.eta_now)
        try:
            summary = run.deliver(progress)
        finally:
            progress.close()
        if stop.is_set():
            summary.stopped = True
        click.echo(summary_text(name, plan, summary, dry_run=False))
    if summary.stopped:
        sys.exit(130)
    if summary.error or summary.failed:
        sys.exit(EXIT_FAILURE)


class Progress:
    """A bar on a terminal; plain lines (one per post) on stderr otherwise, e.g. under systemd or in a log."""

    def __init__(self, name: str, total: int, eta: Callable[[], float], *, tty: bool | None = None) -> None:
        """``eta`` is the run's own estimate of the seconds left (``Backfill.eta_now``): the pacing waits
        included, which an average of the time per post so far would miss early on."""
        self.name = name
        self.total = total
        self.eta = eta
        self.tty = sys.stderr.isatty() if tty is None else tty

    def __call__(self, summary: Summary, post_id: str, state: str) -> None:
        from bridge.backfill import duration

        done = summary.processed
        counts = f"delivered {summary.delivered}, skipped {summary.skipped}, failed {summary.failed}"
        eta = f"ETA {duration(self.eta())}"
        if self.tty:
            width = 24
            filled = int(width * min(done, self.total) / self.total) if self.total else width
            click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {counts} {eta}  ", nl=False, err=True)
        else:
            click.echo(f"{self.name}: {done}/{self.total} post {post_id} {state}; {counts}; {eta}", err=True)

    def close(self) -> None:
        if self.tty:
            click.echo("", err=True)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop``: the post in flight finishes, then the run ends cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: the user insists
        stop.set()
        click.echo("\nstopping after the current post (Ctrl-C again to abort at once)...", err=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _render_status(report: dict[str, Any]) -> str:
    lines = []
    d = report["daemon"]
    lines.append(f"daemon: {'healthy' if d['healthy'] else 'UNHEALTHY'} ({d['health_reason']})")
    budget = report.get("budget")
    if budget:
        lines.append(
            f"X reads: ~{budget['projected_posts_per_month']} posts/month and {budget['projected_requests_per_15min']}"
            f" requests/15 min projected; budget {budget['posts_per_month'] or 'none'} posts/month,"
            f" {budget['requests_per_15min'] or 'none'} requests/15 min"
        )
    if not report["organisations"]:
        lines.append("No organisations linked yet. Link one with: bridge link NAME --x-username HANDLE")
    for org in report["organisations"]:
        lines.append("")
        lines.append(f"{org['name']}: {org['state']}" + (f" ({org['state_reason']})" if org["state_reason"] else ""))
        targets = org.get("targets") or []
        several = len(targets) > 1
        to = ", ".join(t["label"] for t in targets) if several else org["fediverse"]
        for src in org.get("sources") or [{"label": f"X @{org['x_username']}", "state": "active"}]:
            lines.append(f"  {src['label']} -> {to}" + (f"   source {src['state']}" if src["state"] != "active" else ""))
        lines.append(f"  last poll: {org['last_poll'] or 'never'}   next poll: {org['next_poll'] or '-'}")
        if not several:  # one target: its queue is the organisation's, as it always read
            if targets and targets[0]["state"] != "active":
                t = targets[0]
                lines.append(f"  target {t['label']}" + (f": {t['state_reason']}" if t["state_reason"] else ""))
            if org["newest_toot"]:
                lines.append(f"  newest toot: {org['newest_toot']['url']} (post {org['newest_toot']['post_id']})")
            c = org["counts"]
            lines.append(f"  pending {c['pending'] + c['posting']}   delivered {c['delivered']}   skipped {c['skipped']}"
                         f"   failed {c['failed']}")
            for post_id, reason in org["latest_failures"]:
                lines.append(f"    failed {post_id}: {reason}")
        for t in targets if several else []:
            c = t["counts"]
            state = "" if t["state"] == "active" else f"   {t['state']}" + (f" ({t['state_reason']})" if t["state_reason"] else "")
            lines.append(f"  target {t['name']}: {t['account']}{state}")
            lines.append(f"    pending {c['pending'] + c['posting']}   delivered {c['delivered']}   skipped {c['skipped']}"
                         f"   failed {c['failed']}" + (f"   deferred until {t['deferred_until']}" if t["deferred_until"] else ""))
            if t["newest_copy"]:
                lines.append(f"    newest copy: {t['newest_copy']['url']} (post {t['newest_copy']['post_id']})")
            for post_id, reason in t["latest_failures"]:
                lines.append(f"    failed {post_id}: {reason}")
        lines.extend(f"  {t['edits_line']}" for t in targets if t.get("edits_line"))
        if org["deferrals"]:
            lines.append(f"  rate-limit deferrals: {org['deferrals']} (last: {org['last_deferral']})")
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "-")) for r in rows)) for c in columns}
    out = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for r in rows:
        out.append("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c]) for c in columns))
    return "\n".join(line.rstrip() for line in out)


if __name__ == "__main__":  # pragma: no cover
    main()
