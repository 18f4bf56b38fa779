"""CPU and peak memory of each process under test (a process and every child it forked), with psutil."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil


def _group(pids: tuple[int, ...]) -> list[psutil.Process]:
    """Each process and every child it forked."""
    group: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            group += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return group


@dataclass
class _Role:
    pids: tuple[int, ...]
    cpu_first: dict[int, float] = field(default_factory=dict)  # pid -> cpu seconds when first seen
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0
    processes: int = 0


class Sampler:
    """Samples named process groups (one process or several, each with its children) every
    `interval_s` in a thread while it is entered.

    CPU is the sum over the group of user+system time consumed between the first and last sample
    (a process started during the window counts from zero), divided by the wall time: 1.0 = one
    core busy. Peak memory is the largest sum of RSS over the group seen in one sample.
    """

    def __init__(self, roles: Mapping[str, int | list[int]], *, interval_s: float = 0.25) -> None:
        self._roles = {name: _Role(tuple(pids) if isinstance(pids, list) else (pids,)) for name, pids in roles.items()}
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._started = 0.0
        self._elapsed = 0.0
        self._machine_first: tuple[float, float] = (0.0, 0.0)  # (busy, total) CPU seconds, all cores
        self._machine_last: tuple[float, float] = (0.0, 0.0)

    @staticmethod
    def _machine() -> tuple[float, float]:
        t = psutil.cpu_times()
        total = sum(t)
        return total - t.idle - getattr(t, "iowait", 0.0), total

    def _sample(self, *, first: bool) -> None:
        for role in self._roles.values():
            rss = 0
            procs = _group(role.pids)
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu = t.user + t.system
                        rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                if p.pid not in role.cpu_first:
                    role.cpu_first[p.pid] = cpu if first else 0.0
                role.cpu_last[p.pid] = cpu
            role.peak_rss = max(role.peak_rss, rss)
            role.processes = max(role.processes, len(procs))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample(first=False)

    def __enter__(self) -> Sampler:
        self._machine_first = self._machine()
        self._sample(first=True)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        self._machine_last = self._machine()
        self._elapsed = time.monotonic() - self._started

    def machine(self) -> dict[str, float]:
        """The whole machine over the window: cores busy, and the part not used by the sampled processes
        (other programs, the kernel, this harness): the noise in a point."""
        busy = self._machine_last[0] - self._machine_first[0]
        cores = psutil.cpu_count() or 1
        wall = (self._machine_last[1] - self._machine_first[1]) / cores
        busy_cores = busy / wall if wall else 0.0
        ours = sum(r["cpu_cores"] for r in self.results().values())
        return {"busy_cores": round(busy_cores, 2), "other_cores": round(max(busy_cores - ours, 0.0), 2)}

    def results(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, role in self._roles.items():
            cpu_s = sum(role.cpu_last[pid] - role.cpu_first[pid] for pid in role.cpu_last)
            out[name] = {
                "cpu_seconds": round(cpu_s, 4),
                "cpu_cores": round(cpu_s / self._elapsed, 2) if self._elapsed else 0.0,
                "peak_rss_mib": round(role.peak_rss / 2**20, 1),
                "processes": role.processes,
            }
        return out
