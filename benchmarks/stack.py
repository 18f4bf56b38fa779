"""The production path: `/avaliar` through `make stack`'s gateway (nginx → evaluation API → model
service, records in PostgreSQL, one container each from the images of `make images`), measured by
`make bench-stack` (`python -m benchmarks.run --only stack`) in rounds alternating with the original
monolith, with the load section's harness and workload.

The gateway limits each client address (deploy/nginx/gateway.conf: 10 requests/s, bursts of 20, 32
requests at once) and the load tool is one address: the path's capacity is measured with those
limits raised for the bench (BENCH_LIMITS, set through the gateway's entrypoint), and then, with
the gateway started again on the production limits, what one client address gets (2xx capped, the
rest 429).

The stack is started here and stopped at the end, whatever happens (Ctrl-C included). A stack that
is already up (`make stack`) is left alone: the run refuses to start rather than take it down.
CPU and memory are sampled from the host, as for every other system (benchmarks/resources.py): the
containers' processes are the host's, each container's tree from its first process.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.systems import ROOT, System
from devtools import servers

STACK_KEY = "stack_gateway"  # the path's capacity: the gateway's limits raised for the bench
LIMITED_KEY = "stack_gateway_production_limit"  # the same stack, the gateway on gateway.conf's limits
PROJECT = "credit-eligibility"  # deploy/images/stack.sh's podman-compose project
GATEWAY_CONF = ROOT / "deploy" / "nginx" / "gateway.conf"
CONTAINERS_CONF = ROOT / "deploy" / "images" / "containers.conf"

# The gateway's per-client limits for the capacity points: far above anything one machine serves, so
# that the gateway forwards every request (its entrypoint's variables, deploy/nginx/gateway-entrypoint.sh).
BENCH_LIMITS = {
    "GATEWAY_RATE_LIMIT_RPS": "1000000",
    "GATEWAY_RATE_LIMIT_BURST": "1000000",
    "GATEWAY_CONN_LIMIT": "4096",
}
# Empty: the entrypoint runs gateway.conf as built (the production limits).
PRODUCTION_LIMITS = dict.fromkeys(BENCH_LIMITS, "")

# Sampled role -> the compose service whose container it is.
ROLES = {
    "gateway": "gateway",
    "evaluation_api": "evaluation-api",
    "model_service": "model-service",
    "database": "postgres",
}


def gateway_limits(conf: str) -> dict[str, int]:
    """The per-client limits on the API's paths, as gateway.conf writes them."""
    rate = re.search(r"limit_req_zone\s+\S+\s+zone=api_per_client:\S+\s+rate=(\d+)r/s;", conf)
    burst = re.search(r"limit_req\s+zone=api_per_client\s+burst=(\d+)", conf)
    conns = re.search(r"limit_conn\s+conn_per_client\s+(\d+);", conf)
    if not rate or not burst or not conns:
        raise ValueError(f"{GATEWAY_CONF}: no per-client limits on the API's paths (api_per_client, conn_per_client)")
    return {"rate_rps": int(rate.group(1)), "burst": int(burst.group(1)), "concurrent": int(conns.group(1))}


def limits_settings() -> dict[str, dict[str, int]]:
    """The two configurations measured, for the results."""
    bench = {
        "rate_rps": int(BENCH_LIMITS["GATEWAY_RATE_LIMIT_RPS"]),
        "burst": int(BENCH_LIMITS["GATEWAY_RATE_LIMIT_BURST"]),
        "concurrent": int(BENCH_LIMITS["GATEWAY_CONN_LIMIT"]),
    }
    return {"production": gateway_limits(GATEWAY_CONF.read_text(encoding="utf-8")), "bench": bench}


def refill_s(limits: dict[str, int]) -> float:
    """How long one client's bucket takes to fill again from empty: the wait before a limited point,
    so that it starts as a fresh client would."""
    return limits["burst"] / limits["rate_rps"] + 1.0


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def _env(**extra: str) -> dict[str, str]:
    # The Makefile's podman settings when run outside make; the project's own variables left out, so
    # that nothing of the caller's environment reaches the containers through compose's interpolation.
    env = servers.project_env(**extra)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(*args: str, timeout_s: float = 60) -> str:
    done = subprocess.run(["podman", *args], env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def make(target: str, *, log_path: Path, timeout_s: float, **env: str) -> subprocess.CompletedProcess[str]:
    """A Makefile target (make stack, stack-down, ...), its output appended to log_path."""
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"\n$ make {target} {' '.join(f'{k}={v}' for k, v in env.items())}\n")
        log.flush()
        return subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=ROOT,
            env=_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _checked(done: subprocess.CompletedProcess[str], what: str, log_path: Path) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}); the end of {log_path}:\n{_tail(log_path)}")


def existing_containers() -> list[str]:
    """The containers of a stack already on this machine (podman-compose names them PROJECT_SERVICE_1)."""
    out = podman("ps", "--all", "--filter", f"name=^{PROJECT}_", "--format", "{{.Names}}")
    return out.split()


def ensure_images(*, log_path: Path, log: Callable[[str], None]) -> None:
    """Build the images with `make images` if podman lacks any (it makes the base images too)."""
    if make("images-present", log_path=log_path, timeout_s=120).returncode == 0:
        return
    log(f"building the images (make images; about 12 minutes from nothing): {log_path}")
    _checked(make("images", log_path=log_path, timeout_s=3600), "make images", log_path)


def _pid(service: str) -> int:
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", container(service)).strip())
    if pid <= 0:
        raise RuntimeError(f"{container(service)} is not running")
    return pid


def _system_key(api_container: str) -> str:
    """A system key made in the API's container with the documented command line."""
    out = podman(
        "exec", api_container,
        "python", "-m", "evaluation_api.identity.accounts", "create-key", "benchmark", "--role", "system",
        timeout_s=120,
    )  # fmt: skip
    return out.strip().splitlines()[-1]


def _describe(port: int, headers: dict[str, str], limits: dict[str, int], name: str) -> System:
    return System(
        name,
        f"http://127.0.0.1:{port}",
        "/avaliar",
        workload.avaliar_body,
        {role: _pid(service) for role, service in ROLES.items()},
        {
            "launcher": "make stack (deploy/images/stack.sh: deploy/compose.yaml with podman-compose)",
            "containers": "gateway (nginx), evaluation API (1 uvicorn process), model service (1 worker), PostgreSQL",
            "records": "PostgreSQL",
            "gateway_limits": limits,
        },
        headers,
    )


@contextlib.contextmanager
def stack(*, log_path: Path, log: Callable[[str], None]) -> Iterator[System]:
    """`make stack` on a free loopback port with the gateway's limits raised for the bench; `make
    stack-down` at the end, whatever happened (also when it failed half-way)."""
    if found := existing_containers():
        raise RuntimeError(
            f"a stack is already on this machine ({', '.join(found)}): the bench starts and stops its own; "
            "`make stack-down` first"
        )
    port = servers.free_port()
    log(f"starting the stack (make stack, gateway on 127.0.0.1:{port}, limits raised for the bench): {log_path}")
    try:
        _checked(
            make("stack", log_path=log_path, timeout_s=900, GATEWAY_PORT=str(port), **BENCH_LIMITS),
            "make stack",
            log_path,
        )
        headers = {"Authorization": f"Bearer {_system_key(container('evaluation-api'))}"}
        yield _describe(port, headers, limits_settings()["bench"], "make stack through its gateway, limits raised")
    finally:
        log("stopping the stack (make stack-down)")
        done = make("stack-down", log_path=log_path, timeout_s=300)
        if done.returncode != 0:
            log(f"make stack-down failed (exit {done.returncode}); see {log_path}: run it by hand")


def with_production_limits(system: System, *, log_path: Path) -> System:
    """The same stack with its gateway started again on gateway.conf's limits."""
    port = int(system.url.rsplit(":", 1)[1])
    _checked(
        make("stack-gateway", log_path=log_path, timeout_s=300, GATEWAY_PORT=str(port), **PRODUCTION_LIMITS),
        "make stack-gateway",
        log_path,
    )
    production = limits_settings()["production"]
    return _describe(port, system.headers, production, "make stack through its gateway, production limits")


def rate_limited(point: dict[str, Any]) -> int:
    """The gateway's 429s in a point."""
    return int(point["errors"]["by_status"].get("429", 0))


def usable() -> tuple[bool, str]:
    """Whether this machine can run the stack (podman runs containers, and no stack is up)."""
    done = subprocess.run(
        [str(ROOT / "deploy" / "images" / "probe.sh")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return False, done.stdout.strip() or done.stderr.strip()
    if found := existing_containers():
        return False, f"a stack is already up ({', '.join(found)})"
    return True, ""
