"""Random ids (UUID version 4) from the operating system's random source, read 4 KiB at a time.

Each request takes two ids (its request id and its record's); one getrandom() system call for each
was a measurable share of a request's CPU on these virtual machines. The bytes are the same
os.urandom() output, taken 16 at a time. A forked child starts with an empty pool: it must never
hand out the ids its parent will.
"""

from __future__ import annotations

import os
import threading
import uuid

_POOL_BYTES = 4096
_pool = bytearray()
_lock = threading.Lock()


def _forget_pool() -> None:
    global _lock
    _pool.clear()
    _lock = threading.Lock()  # the parent may have held it at the fork


os.register_at_fork(after_in_child=_forget_pool)


def random_uuid() -> uuid.UUID:
    """A new random UUID (version 4), like uuid.uuid4()."""
    with _lock:
        if len(_pool) < 16:
            _pool[:] = os.urandom(_POOL_BYTES)
        chunk = bytes(_pool[-16:])
        del _pool[-16:]
    return uuid.UUID(bytes=chunk, version=4)
