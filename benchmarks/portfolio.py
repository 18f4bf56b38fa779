"""Portfolio runs: how fast `python -m portfolio.score` scores 5,000,000 customers, and with what memory.

    .venv/bin/python -m benchmarks.portfolio [--rows 5000000] [--rounds 3] [--spark-rounds 3] [--no-spark]
    .venv/bin/python -m benchmarks.run --only portfolio      # the same, as a section of `make bench`

The customers are drawn (with replacement) from the real cc_general.csv's five figures when it is
there, its own incomplete rows included; otherwise from the harness's synthetic customers
(benchmarks/workload.py: log-normal amounts, some without purchases or cash advances). Each run is
the whole command, as `make score` runs it: wall time from start to exit (interpreter start and
imports included), peak RSS of the command's own process (exact, from the kernel) and of its process
tree (sampled every 50 ms: Spark's JVM is a child), the machine's load average before it started.

Cases, interleaved round after round so that a noisy moment hits every case alike: the local engine
Parquet -> Parquet at `rows` / 5, `rows` and 2 x `rows` (memory must not grow with the file), CSV ->
Parquet at `rows`, the same Parquet -> Parquet at `rows` with `--explain` (the explanation columns:
their cost is the ratio of the two within each round), the command on 10 rows with and without
`--explain` (what the explanation adds to the start-up, loading numba and the compiled search, apart
from what it adds per row; one such run first, not measured, fills numba's cache), Spark `local[2]`
Parquet -> Parquet at `rows` (its job time from the summary, the rest of the command being the
session's start); then the upload path through the API (benchmarks/portfolio_upload.py). Results:
docs/results/portfolio.json (and results.json's "portfolio" under `make bench`), their tables in
docs/results/summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks import workload
from benchmarks.resources import Sampler
from contract import FEATURES

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data" / "cc_general.csv"
RESULTS = ROOT / "docs" / "results" / "portfolio.json"
COLUMNS = [f.csv_column for f in FEATURES]
# The goals on this 2-core machine (issue 11), the command's wall time included.
GOAL_PARQUET_ROWS_PER_S = 1_000_000
GOAL_CSV_ROWS_PER_S = 500_000
GOAL_UPLOAD_S = 15.0
# Issue 21: with the explanation columns, at least this share of the rows/s without them.
GOAL_EXPLAINED_RATIO = 0.8
# The start-up cases' customers: enough to write every column, too few to count as scoring time.
START_ROWS = 10

Log = Callable[[str], None]


def generate(rows: int, *, seed: int = 0) -> tuple[pa.Table, str]:
    """`rows` customers with CUST_ID and the five figures (cc_general's names); and where they come from."""
    rng = np.random.default_rng(seed)
    if REAL_DATA.is_file():
        real = pacsv.read_csv(REAL_DATA, convert_options=pacsv.ConvertOptions(include_columns=COLUMNS))
        picks = pa.array(rng.integers(0, real.num_rows, rows))
        figures = {c: real.column(c).take(picks) for c in COLUMNS}
        origin = f"drawn with replacement from {REAL_DATA.name} ({real.num_rows} rows, missing values included)"
    else:
        # benchmarks/ never imports tests/: the harness's own synthetic customers (workload.py).
        synthetic = workload.customers(min(rows, 200_000), seed=seed)
        picks = rng.integers(0, len(synthetic), rows)
        figures = {
            f.csv_column: pa.array(np.array([c[f.name] for c in synthetic], dtype=np.float64)[picks]) for f in FEATURES
        }
        origin = "synthetic: benchmarks/workload.py's log-normal customers (the real data was absent)"
    ids = pc.binary_join_element_wise("C", pc.cast(pa.array(np.arange(rows) + 10_001), pa.string()), "")
    return pa.table({"CUST_ID": ids, **figures}), origin


def run_command(command: list[str]) -> dict[str, Any]:
    """Run one command to its exit: wall time, peak memory, CPU, the load average before it started."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="portfolio-run-") as tmp:
        report = Path(tmp) / "child.json"
        # Through benchmarks/child.py: the kernel's peak RSS of the command itself (see its docstring).
        launcher = [sys.executable, "-m", "benchmarks.child", str(report), "--", *command]
        process = subprocess.Popen(launcher, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with Sampler({"score": process.pid}, interval_s=0.05) as sampler:
            output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
        child = json.loads(report.read_text(encoding="utf-8"))
    tree = sampler.results()["score"]
    return {
        "wall_s": round(child["wall_s"], 3),
        "max_rss_mib": round(child["max_rss_mib"], 1),
        "tree_peak_rss_mib": tree["peak_rss_mib"],
        "cpu_s": round(child["cpu_s"], 2),
        "tree_cpu_cores": tree["cpu_cores"],
        "other_cores": sampler.machine()["other_cores"],
        "load_1m_before": round(load_before, 2),
    }


def _spread(xs: list[float], digits: int = 0) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), digits),
        "min": round(min(xs), digits),
        "max": round(max(xs), digits),
    }


def case_stats(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """A case over its rounds: rows/s of the whole command and memory, median with the lowest and highest."""
    out: dict[str, Any] = {
        "rows": rows,
        "rounds": len(runs),
        "runs": runs,
        "rows_per_s": _spread([rows / r["wall_s"] for r in runs]),
        "wall_s": _spread([r["wall_s"] for r in runs], 2),
        "max_rss_mib": _spread([r["max_rss_mib"] for r in runs], 1),
        "tree_peak_rss_mib": _spread([r["tree_peak_rss_mib"] for r in runs], 1),
        "load_1m_before": _spread([r["load_1m_before"] for r in runs], 2),
    }
    jobs = [r["job_s"] for r in runs if "job_s" in r]
    if jobs:
        out["job_rows_per_s"] = _spread([rows / s for s in jobs])
        out["outside_job_s"] = _spread([r["wall_s"] - r["job_s"] for r in runs], 2)
    return out


def goals(cases: dict[str, Any], upload: dict[str, Any] | None) -> dict[str, Any]:
    """The issue's goals: `met` judges the median, `every_round` whether the goal held in each round."""
    out: dict[str, Any] = {}

    def judge(name: str, case: str, goal: float) -> None:
        if case in cases:
            rates = [cases[case]["rows"] / r["wall_s"] for r in cases[case]["runs"]]
            out[name] = {
                "rows_per_s": cases[case]["rows_per_s"],
                "goal": goal,
                "met": statistics.median(rates) >= goal,
                "every_round": all(x >= goal for x in rates),
            }

    judge("local_parquet", "local_parquet", GOAL_PARQUET_ROWS_PER_S)
    judge("local_csv", "local_csv", GOAL_CSV_ROWS_PER_S)
    sizes = [c for c in ("local_parquet_small", "local_parquet", "local_parquet_large") if c in cases]
    if len(sizes) > 1:
        out["memory_by_rows"] = {
            str(cases[c]["rows"]): cases[c]["max_rss_mib"]["max"] for c in sizes
        }  # the largest peak of each size, over the rounds
    if upload is not None:
        walls = [r["wall_s"] for r in upload["runs"]]
        out["upload"] = {
            "wall_s": upload["wall_s"],
            "goal_s": GOAL_UPLOAD_S,
            "met": statistics.median(walls) < GOAL_UPLOAD_S,
            "every_round": all(w < GOAL_UPLOAD_S for w in walls),
        }
    return out


def explanation_cost(runs: dict[str, list[dict[str, Any]]], rows: int) -> dict[str, Any] | None:
    """Rows/s with the explanation columns over rows/s without, within each round (the two ran one
    after the other), and whether the issue's goal held; with the start-up cases, what of the added
    time is start-up and what is per row, and the added time the goal allows."""
    plain, explained = runs.get("local_parquet", []), runs.get("local_parquet_explain", [])
    ratios = [p["wall_s"] / e["wall_s"] for p, e in zip(plain, explained, strict=False)]
    if not ratios:
        return None
    out: dict[str, Any] = {
        "rounds": len(ratios),
        "ratio": _spread(ratios, 3),
        "goal": GOAL_EXPLAINED_RATIO,
        "met": statistics.median(ratios) >= GOAL_EXPLAINED_RATIO,
        "every_round": all(r >= GOAL_EXPLAINED_RATIO for r in ratios),
        "allowed_added_s": _spread([p["wall_s"] * (1 / GOAL_EXPLAINED_RATIO - 1) for p in plain], 2),
    }
    start, start_explained = runs.get("local_parquet_start", []), runs.get("local_parquet_start_explain", [])
    rounds = list(zip(plain, explained, start, start_explained, strict=False))
    if rounds:
        out["start_up_added_s"] = _spread([se["wall_s"] - s["wall_s"] for _, _, s, se in rounds], 2)
        out["per_row_added_us"] = _spread(
            [((e["wall_s"] - p["wall_s"]) - (se["wall_s"] - s["wall_s"])) / rows * 1e6 for p, e, s, se in rounds], 2
        )
    return out


def _job_seconds(summary_path: Path, rows: int) -> float:
    """The job's own time, from the summary the command wrote (rows_per_s = rows / job seconds)."""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return float(rows / summary["rows_per_s"])


def measure(
    *,
    rows: int = 5_000_000,
    rounds: int = 3,
    spark_rounds: int | None = None,
    upload_rows: int = 1_000_000,
    upload: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Every case, `rounds` times each (Spark: `spark_rounds`, 0 for none), then the upload path."""
    spark_rounds = rounds if spark_rounds is None else spark_rounds
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "command": "python -m portfolio.score --input IN --output OUT [--engine spark --spark-master local[2]]",
    }
    with tempfile.TemporaryDirectory(prefix="portfolio-bench-") as tmp:
        work = Path(tmp)
        small, large = max(rows // 5, 1), rows * 2
        table, origin = generate(rows)
        results["data"] = origin
        pq.write_table(table, work / "in.parquet")
        pq.write_table(table.slice(0, small), work / "small.parquet")
        pq.write_table(table.slice(0, START_ROWS), work / "start.parquet")
        with pq.ParquetWriter(work / "large.parquet", table.schema) as writer:  # the same rows twice
            writer.write_table(table)
            writer.write_table(table)
        pacsv.write_csv(table, work / "in.csv")
        del table
        results["input_mib"] = {
            "parquet": round((work / "in.parquet").stat().st_size / 2**20, 1),
            "csv": round((work / "in.csv").stat().st_size / 2**20, 1),
        }
        score = [sys.executable, "-m", "portfolio.score"]

        def local(source: str, out: str) -> list[str]:
            return [*score, "--input", str(work / source), "--output", str(work / out)]

        cases: dict[str, tuple[list[str], int]] = {
            "local_parquet_small": (local("small.parquet", "o_small.parquet"), small),
            "local_parquet": (local("in.parquet", "o.parquet"), rows),
            "local_parquet_large": (local("large.parquet", "o_large.parquet"), large),
            "local_csv": (local("in.csv", "o_csv.parquet"), rows),
            "local_parquet_explain": ([*local("in.parquet", "o_explain.parquet"), "--explain"], rows),
            "local_parquet_start": (local("start.parquet", "o_start.parquet"), START_ROWS),
            "local_parquet_start_explain": (
                [*local("start.parquet", "o_start_explain.parquet"), "--explain"],
                START_ROWS,
            ),
        }
        if spark_rounds:
            cases["spark_local2_parquet"] = (
                [*local("in.parquet", "spark_out.parquet"), "--engine", "spark", "--spark-master", "local[2]"],
                rows,
            )
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        # Once, unmeasured: the first --explain run after a clone compiles the search (about 5 s) into
        # numba's cache, which every later run loads; that one-time cost is not a run's.
        run_command(cases["local_parquet_start_explain"][0])
        for i in range(max(rounds, spark_rounds)):
            for name, (command, n) in cases.items():
                if i >= (spark_rounds if name.startswith("spark") else rounds):
                    continue
                run = run_command(command)
                if name.startswith("spark"):
                    run["job_s"] = round(_job_seconds(work / "spark_out.parquet.summary.json", n), 3)
                runs[name].append(run)
                log(
                    f"portfolio {name} (round {i + 1}): {run['wall_s']:.2f} s, {n / run['wall_s']:,.0f} rows/s, "
                    f"{run['max_rss_mib']:.0f} MiB, load {run['load_1m_before']}"
                )
        results["cases"] = {name: case_stats(r, cases[name][1]) for name, r in runs.items() if r}
        explained = explanation_cost(runs, rows)
        if explained is not None:
            results["explanation"] = explained
    if upload:
        from benchmarks.portfolio_upload import measure as measure_upload  # it imports this module

        results["upload_path"] = measure_upload(upload_rows, rounds, log=log)
    results["goals"] = goals(results["cases"], results.get("upload_path"))
    return results


LABELS = {
    "local_parquet_small": "local, Parquet → Parquet",
    "local_parquet": "local, Parquet → Parquet",
    "local_parquet_large": "local, Parquet → Parquet",
    "local_csv": "local, CSV → Parquet",
    "local_parquet_explain": "local, Parquet → Parquet, `--explain`",
    "local_parquet_start": "local, Parquet → Parquet (start-up)",
    "local_parquet_start_explain": "local, Parquet → Parquet, `--explain` (start-up)",
    "spark_local2_parquet": "Spark `local[2]`, Parquet → Parquet",
}


def _r(s: dict[str, float], unit: str = "", digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])}{unit} ({f.format(s['min'])}–{f.format(s['max'])})"


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def goal_rows(p: dict[str, Any]) -> list[str]:
    """Rows of summary.md's goals table (| goal | median (lowest–highest) | met | every round |)."""
    g, rows = p["goals"], p["rows"]
    out = []
    for key, what in (("local_parquet", "Parquet → Parquet"), ("local_csv", "CSV → Parquet")):
        if key in g:
            e = g[key]
            out.append(
                f"| portfolio, local engine, {what}, {rows:,} customers, whole command ≥ {e['goal']:,} rows/s "
                f"| {_r(e['rows_per_s'])} rows/s | {_yes(e['met'])} | {_yes(e['every_round'])} |"
            )
    explained = p.get("explanation")
    if explained:
        out.append(
            f"| portfolio with the explanation columns, rows/s ≥ {explained['goal']:g} × without "
            f"| {_r(explained['ratio'], '×', 2)} | {_yes(explained['met'])} | {_yes(explained['every_round'])} |"
        )
    if "upload" in g:
        e = g["upload"]
        out.append(
            f"| portfolio upload path, {p['upload_path']['rows']:,}-row CSV to the downloaded result "
            f"< {e['goal_s']:g} s | {_r(e['wall_s'], ' s', 2)} | {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    return out


def facts(p: dict[str, Any]) -> list[str]:
    """What held in every round, for summary.md's list."""
    out = []
    g, cases = p["goals"], p["cases"]
    for key, what in (("local_parquet", "from Parquet"), ("local_csv", "from CSV")):
        if key in g:
            r = g[key]["rows_per_s"]
            out.append(
                f"Portfolio, local engine {what}, {p['rows']:,} customers, the whole command: "
                f"{r['min']:,.0f} to {r['max']:,.0f} rows/s "
                + (
                    "(above the goal in every round)."
                    if g[key]["every_round"]
                    else "(not above the goal in every round)."
                )
            )
    memory = g.get("memory_by_rows")
    if memory:
        parts = [f"{int(n):,} rows {mib:.0f} MiB" for n, mib in memory.items()]
        out.append("Portfolio peak memory of the command, highest round: " + "; ".join(parts) + ".")
    spark, local = cases.get("spark_local2_parquet"), cases.get("local_parquet")
    if spark and local:
        out.append(
            f"Spark `local[2]` on the same {p['rows']:,} rows: {spark['rows_per_s']['min']:,.0f} to "
            f"{spark['rows_per_s']['max']:,.0f} rows/s for the whole command (the job alone "
            f"{spark['job_rows_per_s']['min']:,.0f} to {spark['job_rows_per_s']['max']:,.0f}), "
            f"{spark['outside_job_s']['min']:.0f} to {spark['outside_job_s']['max']:.0f} s outside the job "
            "(JVM and session start, imports)."
        )
    if "upload" in g:
        w = g["upload"]["wall_s"]
        out.append(
            f"Portfolio upload path, {p['upload_path']['rows']:,} rows: {w['min']:.2f} to {w['max']:.2f} s "
            + (
                "(under the goal in every round)."
                if g["upload"]["every_round"]
                else "(not under the goal every round)."
            )
        )
    return out


def markdown(p: dict[str, Any]) -> list[str]:
    """summary.md's portfolio section."""
    cases = p["cases"]
    rounds = max(c["rounds"] for c in cases.values()) if cases else 0
    lines = [
        f"## Portfolio runs (`python -m portfolio.score`, {p['rows']:,} customers)",
        "",
        f"Measured {p['generated_at']} on {p['cpus']} cores, load average at the start "
        f"{', '.join(str(x) for x in p['load_average_at_start'])}. Customers {p['data']}. Each run is the whole "
        "command, interpreter start and imports included, as `make score` runs it; the cases alternate, round "
        f"after round ({rounds} rounds). Figures: median (lowest–highest). Peak memory: the command's own process "
        "(exact, from the kernel) and its process tree (sampled every 50 ms; Spark's JVM is a child).",
        "",
        "| case | customers | rounds | rows/s, whole command | wall (s) | peak RSS, process (MiB) "
        "| peak RSS, tree (MiB) | load (1 min) before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in cases.items():
        lines.append(
            f"| {LABELS.get(name, name)} | {c['rows']:,} | {c['rounds']} | {_r(c['rows_per_s'])} | "
            f"{_r(c['wall_s'], '', 2)} | {_r(c['max_rss_mib'])} | {_r(c['tree_peak_rss_mib'])} | "
            f"{_r(c['load_1m_before'], '', 2)} |"
        )
    lines.append("")
    explained = p.get("explanation")
    lines += [
        (
            f"The explanation columns (`--explain`): rows/s with them over rows/s without, within each round, "
            f"{_r(explained['ratio'], '×', 2)} ({explained['rounds']} rounds; goal ≥ {explained['goal']:g}×)."
            + (
                f" Of the time they add, the start-up (importing numba and loading the compiled search: the "
                f"command on {START_ROWS} rows with and without them) is {_r(explained['start_up_added_s'], ' s', 2)}"
                f" and the search {_r(explained['per_row_added_us'], ' µs', 2)} per row; the goal allows "
                f"{_r(explained['allowed_added_s'], ' s', 2)} in all."
                if "start_up_added_s" in explained
                else ""
            )
            if explained
            else "The explanation columns (`--explain`): not measured in this run."
        ),
        "",
    ]
    spark = cases.get("spark_local2_parquet")
    if spark:
        lines += [
            f"Spark: the job alone (read, sort into input order, score, write, count) {_r(spark['job_rows_per_s'])} "
            f"rows/s; outside the job (JVM, session, imports, the summary) {_r(spark['outside_job_s'], ' s', 1)}.",
            "",
        ]
    upload = p.get("upload_path")
    if upload:
        lines += [
            f"Upload path: a {upload['rows']:,}-row CSV ({upload['csv_mib']} MiB) POSTed to the API (uvicorn, one "
            "process) with the portfolio worker beside it, polled every 0.1 s to `succeeded`, the CSV result "
            "downloaded; the Parquet download timed apart.",
            "",
            "| round | wall: upload to last byte of the CSV (s) | upload (s) | queued to succeeded (s) "
            "| CSV download (s) | Parquet download (s) | load (1 min) before |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, r in enumerate(upload["runs"], 1):
            lines.append(
                f"| {i} | {r['wall_s']:.2f} | {r['upload_s']:.2f} | {r['queued_to_succeeded_s']:.2f} | "
                f"{r['download_csv_s']:.2f} | {r['download_parquet_s']:.2f} | {r.get('load_1m_before', '–')} |"
            )
        lines.append("")
    return lines


def model_paths(rows: int = 100_000, *, repeat: int = 3) -> dict[str, Any]:
    """The model step alone, three ways, on the same customers: the engines' numpy segmenter, the
    scikit-learn pipeline's predict, and the model service's `/predict_bulk` (1 worker; the client's
    JSON encoding not counted, as in benchmarks/bulk.py)."""
    from benchmarks import bulk, systems
    from portfolio.model import load_pipeline, load_segmenter, read_verified

    customers = workload.customers(rows, seed=1)
    figures = np.array([[c[f.name] for f in FEATURES] for c in customers], dtype=np.float64)
    model = read_verified()
    out: dict[str, Any] = {"customers": rows}
    for name, predictor in (("segmenter", load_segmenter(model)), ("pipeline", load_pipeline(model))):
        times = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            predictor.predict(figures)
            times.append(time.perf_counter() - started)
        out[name] = {"seconds": [round(t, 4) for t in times[1:]], "rows_per_s": round(rows / min(times[1:]))}
    with (
        tempfile.TemporaryDirectory(prefix="portfolio-bulk-") as logs,
        systems.model_service(log_dir=Path(logs), workers=1, batching=True) as system,
    ):
        out["predict_bulk"] = bulk.run(url=system.url, n_customers=rows, repeats=repeat)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portfolio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every local case")
    parser.add_argument("--spark-rounds", type=int, default=None, help="rounds of the Spark case (default: --rounds)")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-upload", action="store_true", help="skip the upload path through the API")
    parser.add_argument("--model-step", action="store_true", help="also time the model step alone, three ways")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = measure(
        rows=args.rows,
        rounds=args.rounds,
        spark_rounds=0 if args.no_spark else args.spark_rounds,
        upload=not args.no_upload,
    )
    if args.model_step:
        results["model_step"] = model_paths(repeat=args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results["goals"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
