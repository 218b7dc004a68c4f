"""The `bridge` command: a thin click layer over the library.

It turns our errors into one clear line and an exit code: 0 ok, 1 runtime
failure, 2 usage or configuration error. No command prints a traceback for a
problem the user can fix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

import click
import yaml

from bridge import __version__
from bridge.config import Config, effective, load_config
from bridge.errors import AuthError, BridgeError, ConfigError, SourceError
from bridge.ledger import Ledger
from bridge.logs import configure as configure_logging
from bridge.logs import masker

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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
            masker.register(self._config.x.bearer_token)
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
        except AuthError as exc:
            fail(f"{exc} (run: bridge relink NAME)", EXIT_FAILURE)
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
        lines.append(f"  X @{org['x_username']} -> {org['fediverse']}")
        lines.append(f"  last poll: {org['last_poll'] or 'never'}   next poll: {org['next_poll'] or '-'}")
        if org["newest_toot"]:
            lines.append(f"  newest toot: {org['newest_toot']['url']} (post {org['newest_toot']['post_id']})")
        c = org["counts"]
        lines.append(f"  pending {c['pending'] + c['posting']}   delivered {c['delivered']}   skipped {c['skipped']}   failed {c['failed']}")
        for post_id, reason in org["latest_failures"]:
            lines.append(f"    failed {post_id}: {reason}")
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
