"""Closed-loop load with wrk (Debian's package): N connections, each sending its next request as
soon as the previous answer arrives, for a fixed time.

wrk is driven by a generated Lua script that cycles through the request bodies, counts responses by
status and by second (os.time, one-second bins) and prints one JSON line at the end with wrk's own
latency percentiles (HdrHistogram, microseconds).

Every connection holds its first request for START_DELAY_MS. Without that, the 64 connections
that wrk opens at once reach a server that is already busy answering the first ones, and a
single-process server (uvicorn) accepts the last of them only after up to a second: measured here,
a 6-second run of the monolith had p99 ~900 ms, all of it in the first second, and ~100 ms after.
That is a connection storm at the start of the run, not the steady state the points compare, so the
connections are all opened first, on an idle server, and then start together. wrk starts a
request's clock when it writes it, after the delay; the delay is taken out of the duration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "WRK_JSON "
START_DELAY_MS = 300

_LUA = r"""
local bodies = {%(bodies)s}
local path = "%(path)s"
local conns_per_thread = %(conns_per_thread)d
local held = 0
local n = 0
statuses = {}
per_second_ok = {}
per_second_err = {}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = id * 7919  -- threads start at different bodies
end

function delay()
  -- The first request of each of this thread's connections (they all start at once): hold it.
  if held < conns_per_thread then
    held = held + 1
    return %(start_delay_ms)d
  end
  return 0
end

function request()
  n = n + 1
  return wrk.format(nil, path, nil, bodies[(n %% #bodies) + 1])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local s = os.time()
  if status >= 200 and status < 300 then
    per_second_ok[s] = (per_second_ok[s] or 0) + 1
  else
    per_second_err[s] = (per_second_err[s] or 0) + 1
  end
end

local function encode_map(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%%d": %%d', k, v)) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function merge(name)
  local total = {}
  for _, thread in ipairs(threads) do
    local t = thread:get(name)
    if t then
      for k, v in pairs(t) do total[k] = (total[k] or 0) + v end
    end
  end
  return total
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"duration_us": %%d, "requests": %%d, "bytes": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"p50": %%d, "p90": %%d, "p95": %%d, "p99": %%d, "p999": %%d, "max": %%d, "mean": %%.1f}, ' ..
    '"statuses": %%s, "per_second_ok": %%s, "per_second_err": %%s}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    encode_map(merge("statuses")), encode_map(merge("per_second_ok")), encode_map(merge("per_second_err"))))
end
"""


def _lua_long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _threads(connections: int) -> int:
    return min(2, connections)  # two cores: more wrk threads would only compete with the servers


def script(*, path: str, bodies: list[bytes], connections: int, headers: dict[str, str] | None = None) -> str:
    """The Lua script; `headers` are sent with every request (e.g. Authorization)."""
    return _LUA % {
        "bodies": ", ".join(_lua_long_string(b.decode()) for b in bodies),
        "headers": "\n".join(
            # Spaces inside the brackets: `t[[[k]]]` would read as a long string, not an index.
            f"wrk.headers[ {_lua_long_string(k)} ] = {_lua_long_string(v)}"
            for k, v in (headers or {}).items()
        ),
        "path": path,
        "marker": MARKER,
        "conns_per_thread": connections // _threads(connections),
        "start_delay_ms": START_DELAY_MS,
    }


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    requests: int
    ok: int
    statuses: dict[int, int]
    socket_errors: dict[str, int]  # connect, read, write, timeout
    latency_ms: dict[str, float]  # p50 p90 p95 p99 p999 max mean, over every response wrk received
    per_second: list[dict[str, int]]  # [{"t": epoch second, "ok": n, "errors": n}, ...]

    @property
    def throughput_rps(self) -> float:
        """Successful responses per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "throughput_rps": round(self.throughput_rps, 1),
            "errors": {
                "total": self.requests - self.ok + sum(self.socket_errors.values()),
                "by_status": {str(k): v for k, v in sorted(self.statuses.items()) if not 200 <= k < 300},
                "socket": self.socket_errors,
            },
            "latency_ms": self.latency_ms,
            "per_second": self.per_second,
        }


def available() -> bool:
    return shutil.which("wrk") is not None


def command(*, url: str, connections: int, duration_s: float, script_path: Path, timeout_s: float = 10.0) -> list[str]:
    return [
        "wrk",
        f"-t{_threads(connections)}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script_path),
        url,
    ]


def parse(stdout: str) -> WrkResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")
    raw = json.loads(line[len(MARKER) :])
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    ok_by_s = {int(k): v for k, v in raw["per_second_ok"].items()}
    err_by_s = {int(k): v for k, v in raw["per_second_err"].items()}
    seconds = sorted(set(ok_by_s) | set(err_by_s))
    errors = raw["errors"]
    return WrkResult(
        duration_s=raw["duration_us"] / 1e6 - START_DELAY_MS / 1000,
        requests=raw["requests"],
        ok=sum(v for k, v in statuses.items() if 200 <= k < 300),
        statuses=statuses,
        socket_errors={k: errors[k] for k in ("connect", "read", "write", "timeout")},
        latency_ms={k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        per_second=[{"t": s, "ok": ok_by_s.get(s, 0), "errors": err_by_s.get(s, 0)} for s in seconds],
    )


def start(
    *,
    url: str,
    path: str,
    bodies: list[bytes],
    connections: int,
    duration_s: float,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start wrk; `finish()` waits for it and parses its result. Separate so the caller can sample its CPU."""
    script_file = tempfile.NamedTemporaryFile("w", suffix=".lua", dir=workdir, delete=False)  # noqa: SIM115
    with script_file:
        script_file.write(script(path=path, bodies=bodies, connections=connections, headers=headers))
    return subprocess.Popen(
        command(url=url, connections=connections, duration_s=duration_s, script_path=Path(script_file.name)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], *, timeout_s: float) -> WrkResult:
    try:
        stdout, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{stdout[-2000:]}")
    return parse(stdout)
