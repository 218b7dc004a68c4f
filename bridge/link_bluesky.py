"""Linking a Bluesky account as a second target of an organisation (`bridge link NAME --bluesky-target HANDLE`).

The volunteer makes an app password in Bluesky (Settings, Privacy and security, App passwords) and
gives it at a prompt or in a file; it is never on the command line and never logged (the log
masker learns it first). The handle is resolved to its DID and PDS the way the Bluesky source does
(``BlueskySource.resolve``: ``com.atproto.identity.resolveHandle``, then the DID document from the
``bluesky.plc_url`` directory); one ``createSession`` proves the password and its session is stored
with it, so the daemon's first post needs no second login. The target row: name and kind
"bluesky", base URL the account's PDS, account id the DID, credentials the app password and the
session (JSON; the ledger file is mode 0600).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.config import Config
from bridge.errors import AuthError, ConfigError, PermanentError, SourceError, TransientError
from bridge.ledger import Ledger, TargetAccount
from bridge.logs import get_logger, masker

log = get_logger("bridge.link_bluesky")

TARGET_NAME = "bluesky"


@dataclass(frozen=True)
class BlueskyLink:
    """What `bridge link --bluesky-target` stored."""

    org: str
    did: str
    handle: str
    pds: str
    updated: bool  # the organisation had a Bluesky target already (relinked)


def read_app_password(text: str, where: str) -> str:
    """An app password from a file or a prompt: one line, surrounding whitespace dropped."""
    password = text.strip()
    if not password or "\n" in password:
        raise ConfigError(f"{where}: expected one line holding the Bluesky app password")
    return password


def link_target(ledger: Ledger, config: Config, org: str, handle: str, app_password: str, now: datetime) -> BlueskyLink:
    """Resolve ``handle``, log in once with ``app_password``, store the target. Stores nothing on any error."""
    from bridge.sources.bluesky import BlueskySource
    from bridge.targets.bluesky import BlueskyTarget, credentials_json

    masker.register(app_password)
    record = ledger.get_org(org)
    if record is None or record.state == "unlinked":
        raise ConfigError(f"no organisation named {org!r} (see: bridge orgs); link its source first with bridge link {org} ...")
    b = config.bluesky
    with BlueskySource(b.plc_url, b.appview_url, timeout=b.timeout) as resolver:
        try:
            account = resolver.resolve(handle)
        except (SourceError, PermanentError) as exc:
            raise ConfigError(f"Bluesky handle {handle!r} cannot be linked: {exc}") from None
    for source in ledger.sources(org):
        if source.kind == "bluesky" and source.account_id == account.did:
            raise ConfigError(f"@{account.handle} is {org}'s Bluesky source: posting its own posts back to it would loop")
    target = BlueskyTarget(account.pds, credentials_json(app_password), account_id=account.did, handle=account.handle,
                           timeout=b.timeout, plc_url=b.plc_url)
    try:
        target.login()  # one createSession: proves the password, and its session is stored
    except AuthError as exc:
        raise ConfigError(f"{exc}; nothing was stored") from None
    except TransientError as exc:
        raise TransientError(f"{exc}; nothing was stored, run the command again later") from None
    finally:
        target.close()
    credentials = target.session_credentials()
    existing = ledger.get_target(org, TARGET_NAME)
    ledger.add_target(
        TargetAccount(
            org=org, name=TARGET_NAME, kind="bluesky", base_url=account.pds, account_id=account.did,
            handle=account.handle, account_url=f"https://bsky.app/profile/{account.handle}", credentials=credentials,
            state="active", created_at=existing.created_at if existing is not None else now,
        ),
        now,
    )
    log.info("bluesky_target_linked", org=org, handle=account.handle, did=account.did, pds=account.pds)
    return BlueskyLink(org, account.did, account.handle, account.pds, updated=existing is not None)
