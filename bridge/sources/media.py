"""Opening a media file a source already holds on disk (an archive's extracted file)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from bridge.errors import PermanentError


def open_local_file(ref: str, max_bytes: int) -> tuple[Path, str | None]:
    """The file ``ref`` and its guessed MIME type; PermanentError if missing or over ``max_bytes``."""
    p = Path(ref)
    if not p.is_file():
        raise PermanentError(f"media file {ref} is missing")
    size = p.stat().st_size
    if size > max_bytes:
        raise PermanentError(f"media file {ref} is {size} bytes, over the limit of {max_bytes}")
    return p, mimetypes.guess_type(p.name)[0]


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))
