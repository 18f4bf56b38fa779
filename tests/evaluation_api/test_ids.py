"""evaluation_api/ids.py: random UUIDs from a pool of os.urandom bytes, never repeated, not even
across a fork (`make run` forks one API process per core)."""

from __future__ import annotations

import os
import uuid

from evaluation_api.ids import random_uuid


def test_ids_are_version_4_uuids_and_never_repeat() -> None:
    ids = [random_uuid() for _ in range(5000)]  # several refills of the pool
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    random_uuid()  # the pool is filled, with ids the parent has yet to hand out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, b"".join(random_uuid().bytes for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(random_uuid().bytes for _ in range(8))
    assert len(child) == 8 * 16
    assert {child[i : i + 16] for i in range(0, len(child), 16)}.isdisjoint(
        {parent[i : i + 16] for i in range(0, len(parent), 16)}
    )
