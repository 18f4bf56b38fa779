"""Paced and timed load with locust (headless), and the analysis of its per-request log."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class LocustRun:
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    ramp_s: float  # time until every user runs


def start(
    *,
    url: str,
    path: str,
    bodies: list[dict[str, Any]],
    users: int,
    rate_per_user: float,
    duration_s: float,
    workdir: Path,
    name: str,
    capture: bool = False,
    pages: list[str] | None = None,
    page_rate: float = 5.0,
    headers: dict[str, str] | None = None,
) -> LocustRun:
    """Start locust headless for duration_s; `finish()` waits for it and reads its log."""
    bodies_path = workdir / f"{name}-bodies.json"
    bodies_path.write_text(json.dumps(bodies), encoding="utf-8")
    log_path = workdir / f"{name}-requests.jsonl"
    env = dict(os.environ)
    env.update(
        BENCH_BODIES=str(bodies_path),
        BENCH_PATH=path,
        BENCH_RATE=str(rate_per_user),
        BENCH_LOG=str(log_path),
        BENCH_CAPTURE="1" if capture else "0",
        BENCH_PAGES=",".join(pages or []),
        BENCH_PAGE_RATE=str(page_rate),
        BENCH_HEADERS=json.dumps(headers or {}),
    )
    user_classes = ["EvaluationUser"] + (["PageUser"] if pages else [])
    total_users = users + (1 if pages else 0)
    # Spawn the users over one pacing period (users / total rate), so that their requests are spread
    # evenly in time instead of leaving in bursts of `users` at once.
    spawn_rate = users * rate_per_user if rate_per_user > 0 else total_users
    args = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "-u",
        str(total_users),
        "-r",
        f"{max(spawn_rate, 1.0):g}",
        "-t",
        f"{math.ceil(duration_s)}s",
        "--stop-timeout",
        "3",
        "--only-summary",
        "--loglevel",
        "WARNING",
        *user_classes,
    ]
    with open(workdir / f"{name}-locust.log", "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return LocustRun(process=process, log_path=log_path, started=time.time(), ramp_s=total_users / max(spawn_rate, 1.0))


def finish(run: LocustRun, *, timeout_s: float) -> list[dict[str, Any]]:
    """Wait for locust and return one dict per request (see locustfile.py), sorted by start time."""
    try:
        run.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
        raise
    # Locust exits 1 when any request failed: that is a result here, not an error.
    if run.process.returncode not in (0, 1) or not run.log_path.exists():
        raise RuntimeError(f"locust exited with {run.process.returncode}; see {run.log_path.parent}")
    rows = [json.loads(line) for line in run.log_path.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: r["start"])


def is_ok(row: dict[str, Any]) -> bool:
    return 200 <= row["status"] < 300


def summarize(rows: list[dict[str, Any]], *, window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Throughput, latency percentiles and errors of the POST requests started within window (epoch seconds)."""
    posts = [r for r in rows if r["method"] == "POST"]
    if window:
        posts = [r for r in posts if window[0] <= r["start"] < window[1]]
    if not posts:
        return {
            "requests": 0,
            "ok": 0,
            "throughput_rps": 0.0,
            "offered_rps": 0.0,
            "errors": {"total": 0, "by_status": {}, "socket": 0},
            "latency_ms": {},
        }
    span = (window[1] - window[0]) if window else (posts[-1]["start"] - posts[0]["start"]) or 1.0
    ok = [r for r in posts if is_ok(r)]
    lat = np.array([r["latency_ms"] for r in posts])
    by_status: dict[str, int] = {}
    for r in posts:
        if not is_ok(r) and r["status"]:
            by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    return {
        "duration_s": round(span, 3),
        "requests": len(posts),
        "ok": len(ok),
        "offered_rps": round(len(posts) / span, 1),
        "throughput_rps": round(len(ok) / span, 1),
        "errors": {
            "total": len(posts) - len(ok),
            "by_status": dict(sorted(by_status.items())),
            "socket": sum(1 for r in posts if not r["status"]),
        },
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p95": round(float(np.percentile(lat, 95)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
            "mean": round(float(lat.mean()), 2),
        },
    }


def per_second(rows: list[dict[str, Any]], *, t0: float, method: str = "POST") -> list[dict[str, Any]]:
    """Bins of one second from t0: requests started, successes, failures by status, latency p50/p99."""
    bins: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["method"] == method:
            bins.setdefault(int(r["start"] - t0), []).append(r)
    out = []
    for s in range(min(bins, default=0), max(bins, default=-1) + 1):
        rs = bins.get(s, [])
        lat = [r["latency_ms"] for r in rs]
        statuses: dict[str, int] = {}
        for r in rs:
            if not is_ok(r):
                key = str(r["status"]) if r["status"] else "socket"
                statuses[key] = statuses.get(key, 0) + 1
        out.append(
            {
                "t": s,
                "requests": len(rs),
                "ok": sum(1 for r in rs if is_ok(r)),
                "errors": statuses,
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
            }
        )
    return out
