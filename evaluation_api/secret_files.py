"""Files that hold a secret (the data keys, the token signing key): written whole, then put in place.

Readable by the owner only (0600) from the first byte, and never seen half-written: the text goes to
a temporary file in the same directory, is synced, then linked (or renamed) into place. The API's
processes start together (`make run` runs one per core), so creating one must be exclusive: the
first link wins and the others read it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_secret_file(path: Path, text: str, *, replace: bool) -> bool:
    """Write `text` to `path` atomically, mode 0600. With replace=False an existing file wins (two
    processes starting at once agree on one secret): returns False then."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # atomic and exclusive: fails if the file appeared meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
