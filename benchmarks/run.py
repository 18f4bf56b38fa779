"""Run the benchmarks and regenerate docs/results/ (results.json, summary.md, PNG charts).

    python -m benchmarks.run                 # everything, about 12 minutes on 2 cores (make bench)
    python -m benchmarks.run --rounds 5      # more rounds of the three systems in alternation
    python -m benchmarks.run --smoke --out /tmp/bench   # a few seconds per system: the harness works
    python -m benchmarks.run --only load,bulk            # some sections; the others keep their last results
    python -m benchmarks.run --only portfolio            # portfolio runs alone, about 6 minutes
    python -m benchmarks.run --only stack                # through make stack's gateway (make bench-stack)
    python -m benchmarks.run --only load --systems end_to_end,end_to_end_challenger --rounds 1 --out /tmp/b
                                                         # two of the load's systems, a quick check

Every system is started here on free loopback ports and stopped at the end, whatever happens.
The numbers depend on what else the machine is doing: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from benchmarks import bulk, change_control, load, report, systems
from benchmarks.loadgen import wrk
from benchmarks.systems import ROOT, System

SECTIONS = ("load", "bulk", "fault", "rollout", "scaling", "promotion", "portfolio", "stack")
EXPERIMENTS = ("fault", "rollout", "scaling", "promotion")
# What a run without --only measures. The stack (make bench-stack) needs podman and the images of
# `make images`: it runs when asked for, and a full run keeps its last results.
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "stack")
DEFAULT_OUT = ROOT / "docs" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cc_general.csv"


def evaluation_api_available() -> bool:
    return (ROOT / "evaluation_api" / "main.py").is_file()


def machine() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("bentoml", "fastapi", "uvicorn", "scikit-learn", "locust", "httpx", "aiohttp", "SQLAlchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    wrk_version = ""
    if wrk.available():
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
        wrk_version = out.split("[")[0].strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu_model,
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk_version,
        "git_commit": commit,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load_points(
    system: System, *, clients: list[int], duration_s: float, rate_rps: float, rate_users: int, workdir: Path
) -> list[dict[str, Any]]:
    load.warm_up(system, workdir=workdir)
    points = []
    for n in clients:
        point = load.closed_loop(system, clients=n, duration_s=duration_s, workdir=workdir)
        log(
            f"  {n:>3} clients: {point['throughput_rps']:>7.0f} req/s, p50 {point['latency_ms']['p50']} ms, "
            f"p99 {point['latency_ms']['p99']} ms, errors {point['errors']['total']}"
        )
        points.append(point)
    if rate_rps:
        point = load.fixed_rate(system, rate_rps=rate_rps, users=rate_users, duration_s=duration_s, workdir=workdir)
        log(
            f"  fixed {rate_rps:.0f}/s: {point['throughput_rps']:>7.0f} req/s, "
            f"p50 {point['latency_ms'].get('p50')} ms, "
            f"p99 {point['latency_ms'].get('p99')} ms, errors {point['errors']['total']}"
        )
        points.append(point)
    return points


def _bulk(system: System, *, customers: int, smoke: bool) -> dict[str, Any]:
    """The portfolio through the batch path (the headline), then through /predict for comparison."""
    out: dict[str, Any] = {"config": system.config, "paths": []}
    for name in bulk.BULK_PATHS:
        headline = name == bulk.HEADLINE
        log(f"bulk: {customers:,} customers in one request to {bulk.BULK_PATHS[name].path}")
        result = bulk.run(
            url=system.url,
            n_customers=customers,
            path_name=name,
            repeats=3 if headline and not smoke else 1,
            warm_up=headline,
        )
        log(f"  {result['customers_per_s']:,} customers/s (median of {len(result['seconds'])})")
        out["paths"].append({**result, "headline": headline})
    return out


def ran(args: argparse.Namespace) -> set[str]:
    """The sections this run measures."""
    return set(args.only.split(",")) if args.only else set(DEFAULT_SECTIONS)


def _stack(*, clients: list[int], duration_s: float, rounds: int, work: Path) -> dict[str, Any]:
    """/avaliar through make stack's gateway and the monolith, in alternating rounds at one client and
    the top load (benchmarks/stack.py); then the same stack with the gateway on its production limits."""
    from benchmarks import stack

    # Its own date and machine: the section is usually run alone, apart from the others (make bench-stack).
    out: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"clients": clients, "duration_s": duration_s, "rounds": rounds, "limits": stack.limits_settings()},
        "load": [],
    }
    log_path = work / "stack.log"
    stack.ensure_images(log_path=log_path, log=log)
    with contextlib.ExitStack() as running_stack:
        running = {
            "monolith": running_stack.enter_context(systems.monolith(log_dir=work)),
            stack.STACK_KEY: running_stack.enter_context(stack.stack(log_path=log_path, log=log)),
        }
        keys = list(running)
        for round_no in range(1, rounds + 1):
            log(f"-- stack round {round_no} of {rounds}")
            shift = (round_no - 1) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                log(f"{running[key].name} (round {round_no})")
                for point in _load_points(
                    running[key], clients=clients, duration_s=duration_s, rate_rps=0.0, rate_users=0, workdir=work
                ):
                    out["load"].append({"key": key, "round": round_no, **point})
        # One address against the production limits: what another system calling /avaliar gets. Once:
        # a setting's effect, not a speed to compare. No warm-up (the stack is warm): each point starts
        # with the client's bucket full, as a fresh client's.
        log("the gateway again, on its production limits (make stack-gateway)")
        limited = stack.with_production_limits(running[stack.STACK_KEY], log_path=log_path)
        production = out["settings"]["limits"]["production"]
        for n in clients:
            time.sleep(stack.refill_s(production))
            point = load.closed_loop(limited, clients=n, duration_s=duration_s, workdir=work)
            log(
                f"  {n:>3} clients, production limits: {point['throughput_rps']:>7.1f} req/s answered 2xx, "
                f"{stack.rate_limited(point)} answered 429, other errors "
                f"{point['errors']['total'] - stack.rate_limited(point)}"
            )
            out["load"].append({"key": stack.LIMITED_KEY, "round": 1, **point})
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    sections = ran(args)
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    if not wrk.available():
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (make system-deps)")
    smoke = args.smoke
    only_systems = set(args.systems.split(",")) if args.systems else set()
    unknown = only_systems - set(report.HEADLINE_KEYS)
    if unknown:
        raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}; known: {', '.join(report.HEADLINE_KEYS)}")
    clients = [1, 8] if smoke else [1, 16, 64]
    duration_s = args.duration or (2.0 if smoke else 6.0)
    rate_rps = args.rate if not smoke else 50.0
    e2e = evaluation_api_available()
    rounds = args.rounds or (2 if smoke else 3)

    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "machine": machine(),
        "settings": {
            "duration_s": duration_s,
            "clients": clients,
            "rounds": rounds,
            "monolith_workers": systems.api_processes(),
            "fixed_rate_rps": rate_rps,
            "fixed_rate_users": args.rate_users,
            "bulk_customers": args.bulk_customers,
            "load_tools": {"closed_loop": "wrk", "fixed_rate_and_experiments": "locust (FastHttpUser)"},
        },
        "load": [],
        "bulk": None,
        "experiments": {},
        "skipped": {},
    }
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.workdir))
    log(f"work directory (server logs, wrk scripts, locust logs): {work}")
    started = time.monotonic()

    def section(name: str, fn: Callable[[], None]) -> None:
        if name not in sections:
            return
        log(f"== {name}")
        fn()

    try:
        # --- load: the three systems in alternation, round after round, at 1, 16 and 64 clients ------
        def load_section() -> None:
            starts: dict[str, Callable[[], contextlib.AbstractContextManager[System]]] = {
                "monolith": lambda: systems.monolith(log_dir=work),
                # The fair baseline: the monolith on as many processes as the new system has API processes.
                "monolith_workers": lambda: systems.monolith(log_dir=work, workers=systems.api_processes()),
                "model_service": lambda: systems.model_service(log_dir=work),
            }
            if e2e:
                starts["end_to_end"] = lambda: systems.make_run(log_dir=work, db_path=work / "e2e.db")
                # The same system, decisions not explained: what the explanations cost, in the same rounds.
                starts["end_to_end_unexplained"] = lambda: systems.make_run(
                    log_dir=work, db_path=work / "e2e-unexplained.db", EXPLAIN_DECISIONS="false"
                )
                # The same system with a challenger in shadow: what deciding every evaluation twice costs.
                starts[report.CHALLENGER_KEY] = lambda: systems.make_run_with_challenger(
                    log_dir=work, db_path=work / "e2e-challenger.db"
                )
            else:
                results["skipped"]["end_to_end"] = "evaluation_api/main.py not found"
            keys = [k for k in report.HEADLINE_KEYS if k in starts and (not only_systems or k in only_systems)]
            if report.CHALLENGER_KEY in keys:
                # Its shadow's counts, beside its load points (the key `load` points are under).
                results["challenger"] = {
                    "key": report.CHALLENGER_KEY,
                    "baseline": "end_to_end",
                    "shadow_after_round": [],
                }

            def measure(key: str, system: System, round_no: int) -> None:
                log(f"{system.name} (round {round_no})")
                for point in _load_points(
                    system,
                    clients=clients,
                    duration_s=duration_s,
                    # A smoke run checks the paced load once per system, not every round: locust's start is slow.
                    rate_rps=rate_rps if round_no == 1 or not smoke else 0.0,
                    rate_users=args.rate_users,
                    workdir=work,
                ):
                    results["load"].append({"key": key, "round": round_no, **point})
                if key == report.CHALLENGER_KEY:
                    _shadow_after_round(system, round_no)

            def _shadow_after_round(system: System, round_no: int) -> None:
                """The shadow scorer's counts in every API process once its queue has drained (so that
                its backlog does not run into the next system's point)."""
                kept = results["challenger"]["shadow_after_round"]
                pids = system.roles["evaluation_api"]
                counts = change_control.shadow_counts(system.url, pids if isinstance(pids, list) else [pids])
                added = change_control.delta(counts, kept[-1]["cumulative"] if kept else None)
                kept.append({"round": round_no, "cumulative": counts, "round_delta": added})
                log(
                    f"  shadow, this round: {added['stored']} stored, {added['dropped']} dropped, "
                    f"{added['failed']} failed, of {added['decisions']} evaluations; {counts['pending']} still queued"
                )

            # All three stay up (idle when not measured), so each round measures every system under the
            # same conditions within minutes; the order rotates so that none is always first or last.
            with contextlib.ExitStack() as stack:
                running = {}
                for key in keys:
                    log(f"starting {key}")
                    running[key] = stack.enter_context(starts[key]())
                for round_no in range(1, rounds + 1):
                    log(f"-- round {round_no} of {rounds}")
                    shift = (round_no - 1) % len(keys)
                    for key in keys[shift:] + keys[:shift]:
                        measure(key, running[key], round_no)
                if "bulk" in sections and "model_service" in running:
                    results["bulk"] = _bulk(running["model_service"], customers=args.bulk_customers, smoke=smoke)
                if report.CHALLENGER_KEY in running:
                    challenger = running[report.CHALLENGER_KEY]
                    info = challenger.config["challenger"]
                    swaps = challenger.control.report(info["challenger_id"])
                    # Shadow decisions are real ones: how many the candidate decided otherwise.
                    results["challenger"] |= {
                        "challenger": info,
                        "report": {k: swaps[k] for k in ("evaluations", "changed", "swap")},
                    }

            # The model service's variants, one round each: what batching and a second worker buy.
            variants = (
                [] if smoke or not args.variants or only_systems else [(True, 1), (True, 2), (False, 1), (False, 2)]
            )
            for batching, workers in variants:
                key = f"model_service_batching_{'on' if batching else 'off'}_{workers}w"
                with systems.model_service(log_dir=work, workers=workers, batching=batching) as system:
                    measure(key, system, 1)

        section("load", load_section)

        def bulk_section() -> None:
            if results["bulk"] is not None:
                return
            with systems.model_service(log_dir=work) as system:
                results["bulk"] = _bulk(system, customers=args.bulk_customers, smoke=smoke)

        section("bulk", bulk_section)

        # --- experiments (they need the evaluation API) ---------------------------------------------
        from benchmarks import experiments

        for name in EXPERIMENTS:
            if name not in sections:
                continue
            if not e2e:
                results["skipped"][name] = "evaluation_api/main.py not found"
                continue
            log(f"== experiment: {name}")
            fn = getattr(experiments, name)
            results["experiments"][name] = fn(workdir=work, smoke=smoke, data_path=args.data, log=log)

        # --- portfolio runs: the scoring command on 5,000,000 customers, Spark beside it, the upload path
        def portfolio_section() -> None:
            from benchmarks import portfolio

            spark_rounds = args.portfolio_spark_rounds if args.portfolio_spark_rounds >= 0 else rounds
            results["portfolio"] = portfolio.measure(
                rows=args.portfolio_rows if not smoke else min(args.portfolio_rows, 20_000),
                rounds=rounds if not smoke else 1,
                spark_rounds=spark_rounds if not smoke else min(spark_rounds, 1),
                upload_rows=1_000_000 if not smoke else 20_000,
                log=log,
            )

        section("portfolio", portfolio_section)

        # --- the production path: make stack's gateway, PostgreSQL (opt-in: make bench-stack) ------
        def stack_section() -> None:
            results["stack"] = _stack(clients=[1, max(clients)], duration_s=duration_s, rounds=rounds, work=work)

        section("stack", stack_section)
    finally:
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        if not args.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return results


def carry_over(results: dict[str, Any], previous_path: Path, *, ran: set[str]) -> None:
    """Sections not run this time (`--only`) keep the results of the last full-length run in previous_path,
    named in results["carried_over"] with that run's date, so one section can be refreshed without
    erasing the others. Nothing is carried from a smoke run, nor into one."""
    if results.get("smoke") or not previous_path.is_file():
        return
    previous = json.loads(previous_path.read_text(encoding="utf-8"))
    if previous.get("smoke"):
        return
    dates = previous.get("carried_over", {})
    when = previous.get("generated_at", "?")
    carried: dict[str, str] = {}
    for name in SECTIONS:
        if name in ran:
            continue
        if name == "load" and previous.get("load"):
            results["load"], results["settings"] = previous["load"], previous["settings"]
            if previous.get("challenger"):
                results["challenger"] = previous["challenger"]
        elif name in ("bulk", "portfolio", "stack") and previous.get(name):
            results[name] = previous[name]
        elif previous.get("experiments", {}).get(name):
            results["experiments"][name] = previous["experiments"][name]
        else:
            continue
        carried[name] = dates.get(name, when)
    if carried:
        results["carried_over"] = carried
    if not ran & set(DEFAULT_SECTIONS):
        # Only the stack ran (it stamps its own date and machine): the run's header stays that of the
        # run whose figures the other sections carry.
        for key in ("generated_at", "machine", "elapsed_s"):
            if key in previous:
                results[key] = previous[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--out", type=Path, default=DEFAULT_OUT, help="where results go (default: docs/results)")
    add(
        "--only",
        default="",
        help=f"comma-separated sections of {','.join(SECTIONS)} (default: {','.join(DEFAULT_SECTIONS)})",
    )
    add("--smoke", action="store_true", help="a few seconds per system, fewer systems: checks that the harness works")
    add("--duration", type=float, default=0.0, help="seconds per load point (default 6; 2 with --smoke)")
    add("--rounds", type=int, default=0, help="rounds of the three systems in alternation (default 3; 2 with --smoke)")
    add("--no-variants", dest="variants", action="store_false", help="skip the model service's variants (one round)")
    add(
        "--systems",
        default="",
        help=f"with load: only these of its systems, comma-separated ({','.join(report.HEADLINE_KEYS)}); a quick "
        "check, so not with the default --out",
    )
    add(
        "--api-key",
        default=None,
        help=f"system key sent as `Authorization: Bearer KEY` to the evaluation API (default ${systems.API_KEY_ENV})",
    )
    add("--rate", type=float, default=400.0, help="the fixed (paced) rate in requests/s (default 400)")
    add("--rate-users", type=int, default=64, help="locust users sharing the fixed rate (default 64)")
    add("--bulk-customers", type=int, default=100_000, help="customers in the bulk request (default 100,000)")
    add("--data", type=Path, default=DEFAULT_DATA, help="training CSV for the rollout experiment")
    add("--portfolio-rows", type=int, default=5_000_000, help="customers per portfolio run (default 5,000,000)")
    add(
        "--portfolio-spark-rounds",
        type=int,
        default=-1,
        help="rounds of the Spark case, about 80 s each (default: --rounds; 0 skips Spark)",
    )
    add("--workdir", type=Path, default=None, help="parent of the temporary work directory (default: system temp)")
    add("--keep-workdir", action="store_true", help="keep server logs and load-tool files")
    args = parser.parse_args(argv)
    if args.api_key:
        os.environ[systems.API_KEY_ENV] = args.api_key
    if args.systems and args.out.resolve() == DEFAULT_OUT.resolve():
        parser.error("--systems measures part of the load section: give --out another directory than docs/results")
    if args.smoke and args.bulk_customers == 100_000:
        args.bulk_customers = 2_000

    results = run(args)
    elapsed_s = results["elapsed_s"]  # this run's own: carry_over may restore the header of the run it completes
    # A section not run keeps its last results (every run but one of every section: the stack is opt-in).
    carry_over(results, args.out / "results.json", ran=ran(args))
    results["goals"] = report.goals(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if "portfolio" in results and "portfolio" not in results.get("carried_over", {}):
        (args.out / "portfolio.json").write_text(json.dumps(results["portfolio"], indent=2) + "\n", encoding="utf-8")
    # The architecture document quotes the real run, never a smoke run or one written elsewhere.
    publish = not args.smoke and args.out.resolve() == DEFAULT_OUT.resolve()
    report.write(
        results,
        out_dir=args.out,
        doc=report.ARCHITECTURE if publish else None,
        readme=report.README if publish else None,
    )
    log(f"done in {elapsed_s:.0f}s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
