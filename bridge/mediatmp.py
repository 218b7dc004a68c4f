"""Scratch folders for media on its way from X to Mastodon, and cleaning up after killed runs.

A delivery downloads its media into a folder of its own in $TMPDIR, named
``geno-bridge-media-*`` and locked (flock(2)) by the process using it for as long
as the folder exists. A run killed mid-download (SIGKILL, the OOM killer, a power
cut) never removes its folder; ``clean_stale`` removes every such folder that no
live process holds, and the daemon and `bridge poll` call it when they start.
The lock, not the process id, tells a live folder from a stale one: in a restarted
container the new process often has the same pid as the killed one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "geno-bridge-media-"
_STAGING = ".geno-bridge-media-new-"  # created, not yet locked: never taken for stale while young
_STAGING_MAX_AGE = 3600.0  # seconds


@contextmanager
def media_dir() -> Iterator[Path]:
    """A locked scratch folder in $TMPDIR, removed afterwards.

    It is created under a staging name and renamed once locked, so ``clean_stale``
    in another process never sees it unlocked.
    """
    staging = Path(tempfile.mkdtemp(prefix=_STAGING))
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    path = staging
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = staging.with_name(PREFIX + staging.name[len(_STAGING):])
        os.rename(staging, path)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def clean_stale(base: str | os.PathLike[str] | None = None) -> int:
    """Remove the media folders of runs that were killed; returns how many were removed."""
    folder = Path(base) if base is not None else Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.startswith((PREFIX, _STAGING)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.getuid():
                continue
            if entry.name.startswith(_STAGING) and time.time() - info.st_mtime < _STAGING_MAX_AGE:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a live run is using it
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed
