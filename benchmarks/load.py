"""One load point: a system under a given load, with the resources each of its processes used."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.loadgen import locust_runner, wrk
from benchmarks.resources import Sampler
from benchmarks.systems import System

# 256 distinct customers, sent in turn.
N_BODIES = 256


def bodies(system: System) -> list[dict[str, object]]:
    return [system.body(c, i) for i, c in enumerate(workload.customers(N_BODIES))]


def warm_up(system: System, *, workdir: Path, seconds: float = 2.0) -> None:
    """A short run that is not measured: first requests pay for imports, caches and connection setup."""
    process = wrk.start(
        url=system.url,
        path=system.path,
        bodies=_encoded(system),
        connections=16,
        duration_s=seconds,
        workdir=workdir,
        headers=system.headers,
    )
    wrk.finish(process, timeout_s=seconds + 30)


def _encoded(system: System) -> list[bytes]:
    return [json.dumps(b, separators=(",", ":")).encode() for b in bodies(system)]


def cpu_per_request(resources: dict[str, dict[str, Any]], requests: int) -> dict[str, float]:
    """CPU milliseconds per answered request, per role (each a process tree) and for the system under
    test in all (every role but the load generator). Robust to a busy machine where throughput is not:
    other programs slow a point down but do not make its processes spend more CPU per request."""
    if not requests:
        return {}
    out = {role: round(1000 * r["cpu_seconds"] / requests, 4) for role, r in resources.items()}
    out["system"] = round(sum(v for role, v in out.items() if role != "load_generator"), 4)
    return out


def closed_loop(system: System, *, clients: int, duration_s: float, workdir: Path) -> dict[str, Any]:
    """`clients` connections, each sending its next request when the previous answer arrives (wrk)."""
    process = wrk.start(
        url=system.url,
        path=system.path,
        bodies=_encoded(system),
        connections=clients,
        duration_s=duration_s,
        workdir=workdir,
        headers=system.headers,
    )
    with Sampler({**system.pids(), "load_generator": process.pid}) as sampler:
        result = wrk.finish(process, timeout_s=duration_s + 30)
    return {
        "system": system.name,
        "config": system.config,
        "path": system.path,
        "tool": "wrk",
        "mode": "closed_loop",
        "clients": clients,
        **result.as_dict(),
        "resources": sampler.results(),
        "cpu_ms_per_request": cpu_per_request(sampler.results(), result.requests),
        "machine_cpu": sampler.machine(),
    }


def fixed_rate(system: System, *, rate_rps: float, users: int, duration_s: float, workdir: Path) -> dict[str, Any]:
    """`rate_rps` requests per second in total, paced by locust over `users` users (constant_throughput).

        Each user starts a request every users/rate seconds, so arrivals do not wait for the server as
        long as a response takes less than that interval; a slower server shows as an achieved rate below
        the offered one (reported), not as hidden queueing. The users are spawned over one pacing period
    so that their requests are evenly spread; that ramp and one more second are not counted.
    """
    name = f"fixed-{system.name.split()[0]}-{int(rate_rps)}-{time.monotonic_ns()}"
    settle_s = users / rate_rps + 1.0
    run = locust_runner.start(
        url=system.url,
        path=system.path,
        bodies=bodies(system),
        users=users,
        rate_per_user=rate_rps / users,
        duration_s=duration_s + settle_s,
        workdir=workdir,
        name=name,
        headers=system.headers,
    )
    with Sampler({**system.pids(), "load_generator": run.process.pid}) as sampler:
        rows = locust_runner.finish(run, timeout_s=duration_s + 40)
    t0 = rows[0]["start"] if rows else run.started
    summary = locust_runner.summarize(rows, window=(t0 + settle_s, t0 + settle_s + duration_s))
    return {
        "system": system.name,
        "config": system.config,
        "path": system.path,
        "tool": "locust",
        "mode": "fixed_rate",
        "clients": users,
        "rate_rps": rate_rps,
        **summary,
        "resources": sampler.results(),
        "cpu_ms_per_request": cpu_per_request(sampler.results(), len(rows)),
        "machine_cpu": sampler.machine(),
    }
