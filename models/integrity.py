"""The pickle's fingerprint: standard library only, so that whatever checks a pickle before
unpickling it (the import into BentoML's store, portfolio runs) does not pull in training's imports."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
