"""Portfolio runs: how fast `python -m portfolio.score` scores 5,000,000 customers, and with what memory.

    .venv/bin/python -m benchmarks.portfolio [--rows 5000000] [--repeat 5] [--spark-repeat 2] [--no-spark]

The customers are drawn (with replacement) from the real cc_general.csv's five figures when it is
there, its own incomplete rows included; otherwise from the harness's synthetic customers
(benchmarks/workload.py: log-normal amounts, some without purchases or cash advances). Each run is
the whole command, as a user types it: wall time from start to exit, peak RSS of the process tree
(sampled every 50 ms). Runs:
Parquet -> Parquet and CSV -> Parquet on the local engine, Parquet -> Parquet on Spark `local[2]`
(with the session's start timed apart). Results: docs/results/portfolio.json.
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


def _run(command: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with Sampler({"score": process.pid}, interval_s=0.05) as sampler:
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
    used = sampler.results()["score"]
    return {"wall_s": wall, "peak_rss_mib": used["peak_rss_mib"], "cpu_cores": used["cpu_cores"]}


def _stats(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    rates = [rows / w for w in walls]
    return {
        "runs": len(runs),
        "wall_s": [round(w, 3) for w in walls],
        "rows_per_s_median": round(statistics.median(rates)),
        "rows_per_s_min": round(min(rates)),
        "rows_per_s_max": round(max(rates)),
        "peak_rss_mib_max": round(max(r["peak_rss_mib"] for r in runs), 1),
        "cpu_cores_median": statistics.median(r["cpu_cores"] for r in runs),
    }


def spark_start_s() -> float:
    """Seconds from nothing to a usable local[2] SparkSession (JVM start included), in a fresh process."""
    code = (
        "import time; t=time.perf_counter(); from portfolio.spark_engine import spark_session; "
        "s=spark_session('local[2]'); s.range(1).count(); print(time.perf_counter()-t); s.stop()"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def model_paths(rows: int = 100_000, *, repeat: int = 3) -> dict[str, Any]:
    """The model step alone, two ways, on the same customers: in process (the verified pickle, what
    the engines do) and through the model service's `/predict_bulk` (1 worker; the client's JSON
    encoding not counted, as in benchmarks/bulk.py)."""
    from benchmarks import bulk, systems, workload
    from portfolio.model import load_pipeline, read_verified

    customers = workload.customers(rows, seed=1)
    figures = np.array([[c[f.name] for f in FEATURES] for c in customers], dtype=np.float64)
    pipeline = load_pipeline(read_verified())
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        pipeline.predict(figures)
        times.append(time.perf_counter() - started)
    in_process = statistics.median(times[1:])
    with (
        tempfile.TemporaryDirectory(prefix="portfolio-bulk-") as logs,
        systems.model_service(log_dir=Path(logs), workers=1, batching=True) as system,
    ):
        service = bulk.run(url=system.url, n_customers=rows, repeats=repeat)
    return {
        "customers": rows,
        "in_process_predict_s": [round(t, 4) for t in times[1:]],
        "in_process_rows_per_s": round(rows / in_process),
        "predict_bulk": service,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portfolio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each local case")
    parser.add_argument("--spark-repeat", type=int, default=2, help="runs of the Spark case (each takes longer)")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-service", action="store_true", help="skip the in-process vs /predict_bulk comparison")
    parser.add_argument("--no-upload", action="store_true", help="skip the upload path through the API")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"rows": args.rows, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="portfolio-bench-") as tmp:
        work = Path(tmp)
        table, origin = generate(args.rows)
        results["data"] = origin
        pq.write_table(table, work / "in.parquet")
        pacsv.write_csv(table, work / "in.csv")
        del table
        results["input_mb"] = {
            "parquet": round((work / "in.parquet").stat().st_size / 1e6, 1),
            "csv": round((work / "in.csv").stat().st_size / 1e6, 1),
        }
        score = [sys.executable, "-m", "portfolio.score"]
        cases = {
            "local_parquet_to_parquet": [
                *score,
                "--input",
                str(work / "in.parquet"),
                "--output",
                str(work / "o.parquet"),
            ],
            "local_csv_to_parquet": [*score, "--input", str(work / "in.csv"), "--output", str(work / "o2.parquet")],
        }
        if not args.no_spark:
            cases["spark_local2_parquet_to_parquet"] = [
                *score,
                *("--engine", "spark", "--spark-master", "local[2]"),
                *("--input", str(work / "in.parquet"), "--output", str(work / "spark_out.parquet")),
            ]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        for i in range(max(args.repeat, args.spark_repeat)):  # interleaved: a noisy moment hits every case alike
            for name, command in cases.items():
                if i >= (args.spark_repeat if name.startswith("spark") else args.repeat):
                    continue
                runs[name].append(_run(command))
                print(f"{name}: {runs[name][-1]['wall_s']:.2f} s, {runs[name][-1]['peak_rss_mib']:.0f} MiB", flush=True)
        results["cases"] = {name: _stats(r, args.rows) for name, r in runs.items()}
        if not args.no_spark:
            starts = [spark_start_s() for _ in range(args.spark_repeat)]
            results["spark_start_s"] = {
                "median": round(statistics.median(starts), 2),
                "all": [round(s, 2) for s in starts],
            }
    if not args.no_service:
        results["model_step"] = model_paths(repeat=args.repeat)
    if not args.no_upload:
        from benchmarks.portfolio_upload import measure  # it imports this module

        results["upload_path"] = measure(1_000_000, min(args.repeat, 3))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results["cases"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
