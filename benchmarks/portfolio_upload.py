"""The upload path: a portfolio CSV POSTed to the API, polled to `succeeded`, the result downloaded.

    .venv/bin/python -m benchmarks.portfolio_upload [--rows 1000000] [--repeat 3]

The API (uvicorn) and the portfolio worker (python -m portfolio.worker) run as `make run` runs them, on
a temporary SQLite file and run directory; an analyst signs in over HTTP. Each run is timed from the
first byte of the upload to the last byte of the downloaded CSV (the Parquet download is timed apart).
The figures go to docs/results/portfolio.json under "upload_path" (`python -m benchmarks.portfolio`
calls this too).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pacsv

from benchmarks.portfolio import RESULTS, generate
from devtools import servers
from devtools.portfolio_worker import running_worker

URL = "/api/v1/portfolio-runs"
DEADLINE_S = 600
ANALYST = "bench.analyst"


def _analyst(database_url: str, password: str) -> None:
    """An analyst account, made with the documented command line."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "evaluation_api.identity.accounts",
            "create",
            ANALYST,
            "--role",
            "analyst",
            "--password-stdin",
        ],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
        cwd=servers.ROOT,
        env=servers.project_env(DATABASE_URL=database_url),
    )


def _token(base_url: str, password: str) -> str:
    answer = httpx.post(f"{base_url}/api/v1/auth/token", data={"username": ANALYST, "password": password}, timeout=30)
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def _one(client: httpx.Client, csv_path: Path, work: Path) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with csv_path.open("rb") as f:
        answer = client.post(URL, files={"file": ("carteira.csv", f, "text/csv")})
    answer.raise_for_status()
    uploaded = time.perf_counter()
    run_id = answer.json()["id"]
    while True:
        run = client.get(f"{URL}/{run_id}").json()
        if run["status"] in ("succeeded", "failed"):
            break
        if time.perf_counter() - start > DEADLINE_S:
            raise RuntimeError(f"run {run_id} not finished after {DEADLINE_S}s")
        time.sleep(0.1)
    if run["status"] != "succeeded":
        raise RuntimeError(f"run {run_id} failed: {run['error']}")
    finished = time.perf_counter()
    out = work / f"{run_id}.csv"
    with client.stream("GET", run["result"]["csv"]) as response, out.open("wb") as f:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            f.write(chunk)
    downloaded = time.perf_counter()
    with client.stream("GET", run["result"]["parquet"]) as response:
        response.raise_for_status()
        parquet_bytes = sum(len(c) for c in response.iter_bytes(1 << 20))
    parquet_s = time.perf_counter() - downloaded
    out.unlink()
    return {
        "wall_s": round(downloaded - start, 2),
        "upload_s": round(uploaded - start, 2),
        "queued_to_succeeded_s": round(finished - uploaded, 2),
        "download_csv_s": round(downloaded - finished, 2),
        "download_parquet_s": round(parquet_s, 2),
        "parquet_mib": round(parquet_bytes / 2**20, 1),
        "engine_rows_per_s": run["summary"]["rows_per_s"],
        "load_1m_before": round(load_before, 2),
    }


def measure(rows: int, repeat: int, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="portfolio-upload-") as tmp:
        work = Path(tmp)
        table, origin = generate(rows)
        csv_path = work / "carteira.csv"
        pacsv.write_csv(table, csv_path)
        database_url = f"sqlite:///{work / 'evaluations.db'}"
        run_dir = work / "portfolio-runs"
        password = secrets.token_urlsafe(18)
        _analyst(database_url, password)
        api = servers.evaluation_api(
            model_url="http://127.0.0.1:9",  # not called: runs score in the worker, in process
            database_url=database_url,
            log_dir=work,
            PORTFOLIO_RUN_DIR=str(run_dir),
            AUTH_SIGNING_KEY=secrets.token_urlsafe(48),
        )
        with api, running_worker(database_url=database_url, run_dir=run_dir, log_path=work / "worker.log"):
            headers = {"Authorization": f"Bearer {_token(api.url, password)}"}
            with httpx.Client(base_url=api.url, headers=headers, timeout=120) as client:
                runs = []
                for _ in range(repeat):
                    runs.append(_one(client, csv_path, work))
                    log(f"portfolio upload path (round {len(runs)}): {runs[-1]}")
        walls = [r["wall_s"] for r in runs]
        return {
            "rows": rows,
            "csv_mib": round(csv_path.stat().st_size / 2**20, 1),
            "data": origin,
            "wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
            "load_1m_at_end": round(os.getloadavg()[0], 2),
            "runs": runs,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portfolio_upload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = measure(args.rows, args.repeat)
    results = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    results["upload_path"] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["wall_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
