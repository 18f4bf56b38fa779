"""CPU per request of one system under a fixed load, and optionally where it goes (py-spy).

    python -m benchmarks.profile end_to_end --clients 64 --seconds 10
    python -m benchmarks.profile end_to_end --clients 64 --py-spy /tmp/prof      # flame graphs per process
    python -m benchmarks.profile model_service --rounds 3 --env MODEL_SERVICE_WORKERS=1

CPU per request (the CPU seconds of each process tree over the run, divided by the responses) is
what to compare between two variants of the code or the settings on a busy machine: other programs
slow a run down, they barely change how much CPU each request costs. `--rounds N` repeats the run
on the same processes and prints every round, so variants can be compared in alternation. `--env`
reaches the system's processes (for `end_to_end`, through `make run`'s environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import load, systems
from benchmarks.loadgen import wrk
from benchmarks.systems import System

SYSTEMS = ("monolith", "end_to_end", "model_service")


@contextlib.contextmanager
def _system(name: str, *, work: Path, env: dict[str, str]) -> Iterator[System]:
    if name == "monolith":
        with systems.monolith(log_dir=work) as s:
            yield s
    elif name == "end_to_end":
        with systems.make_run(log_dir=work, db_path=work / "profile.db", **env) as s:
            yield s
    else:
        with systems.model_service(log_dir=work, **env) as s:
            yield s


def _py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy on a process and its children (BentoML's workers, uvicorn's), as collapsed stacks: one
    line per stack, its frames and a count (flamegraph tools read it)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the system's processes")
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="a directory for py-spy flame graphs (collapsed stacks, for flamegraph tools)",
    )
    parser.add_argument("--json", action="store_true", help="print each round as one JSON line")
    args = parser.parse_args(argv)
    extra = dict(p.partition("=")[::2] for p in args.env)
    work = Path(tempfile.mkdtemp(prefix="profile-"))
    rows: list[dict[str, Any]] = []
    with _system(args.system, work=work, env=extra) as system:
        load.warm_up(system, workdir=work)
        for round_no in range(1, args.rounds + 1):
            spies = []
            if args.py_spy and round_no == 1:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                spies = [
                    _py_spy(pid, args.py_spy / f"{args.system}-{role}{f'-{i}' if i else ''}.folded.txt", args.seconds)
                    for role, pids in system.pids().items()
                    for i, pid in enumerate(pids if isinstance(pids, list) else [pids])
                ]
                time.sleep(1.0)  # py-spy attaches before the load starts
            point = load.closed_loop(system, clients=args.clients, duration_s=args.seconds, workdir=work)
            for spy in spies:
                spy.wait(timeout=60)
            row = {
                "system": args.system,
                "round": round_no,
                "clients": args.clients,
                "env": extra,
                "throughput_rps": point["throughput_rps"],
                "p50_ms": point["latency_ms"]["p50"],
                "p99_ms": point["latency_ms"]["p99"],
                "errors": point["errors"]["total"],
                "cpu_ms_per_request": point["cpu_ms_per_request"],
                "other_cores": point["machine_cpu"]["other_cores"],
                "load_average": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                cpu = ", ".join(f"{k} {v:.3f}" for k, v in row["cpu_ms_per_request"].items())
                print(
                    f"round {round_no}: {row['throughput_rps']:.0f} req/s, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms, errors {row['errors']}; CPU ms/request: {cpu}",
                    flush=True,
                )
    if len(rows) > 1 and not args.json:
        median = statistics.median(r["cpu_ms_per_request"]["system"] for r in rows)
        print(f"median CPU ms/request (system): {median:.3f}")
    return 0


if __name__ == "__main__":
    if not wrk.available():
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (make system-deps)")
    sys.exit(main())
