"""The portfolio benchmark's pure parts: rounds into medians and goals, the report's section, the carry-over
of sections not run, and the launcher that measures a command's own peak memory. No wall-clock time is
asserted: the figures below are made up, and the launcher is checked on memory it surely allocates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import portfolio, report, run
from devtools.servers import ROOT


def _run(wall_s: float, rss: float, **extra: float) -> dict[str, Any]:
    return {"wall_s": wall_s, "max_rss_mib": rss, "tree_peak_rss_mib": rss + 8, "load_1m_before": 0.5, **extra}


CASES = {
    "local_parquet_small": portfolio.case_stats([_run(1.0, 300.0), _run(1.1, 301.0)], 1_000_000),
    "local_parquet": portfolio.case_stats([_run(4.0, 360.0), _run(6.0, 362.0)], 5_000_000),
    "local_parquet_large": portfolio.case_stats([_run(9.0, 365.0), _run(8.0, 366.0)], 10_000_000),
    "local_csv": portfolio.case_stats([_run(8.0, 370.0), _run(12.0, 371.0)], 5_000_000),
    "spark_local2_parquet": portfolio.case_stats(
        [_run(80.0, 200.0, job_s=50.0), _run(100.0, 210.0, job_s=60.0)], 5_000_000
    ),
}
UPLOAD = {
    "rows": 1_000_000,
    "csv_mib": 47.0,
    "wall_s": {"median": 11.0, "min": 6.0, "max": 16.0},
    "runs": [
        {"wall_s": w, "upload_s": 1, "queued_to_succeeded_s": 1, "download_csv_s": 1, "download_parquet_s": 0.1}
        for w in (6.0, 16.0)
    ],
}


def _portfolio() -> dict[str, Any]:
    return {
        "generated_at": "2026-11-27T13:00:00+00:00",
        "rows": 5_000_000,
        "cpus": 2,
        "load_average_at_start": [0.3, 0.4, 0.5],
        "data": "made up",
        "cases": CASES,
        "upload_path": UPLOAD,
        "goals": portfolio.goals(CASES, UPLOAD),
    }


def test_a_case_is_its_median_with_the_lowest_and_highest_round() -> None:
    case = CASES["local_parquet"]
    assert case["rows_per_s"] == {"median": 1_041_667, "min": 833_333, "max": 1_250_000}
    assert case["max_rss_mib"] == {"median": 361.0, "min": 360.0, "max": 362.0}
    spark = CASES["spark_local2_parquet"]
    assert spark["job_rows_per_s"] == {"median": 91_667, "min": 83_333, "max": 100_000}
    assert spark["outside_job_s"] == {"median": 35.0, "min": 30.0, "max": 40.0}


def test_goals_judge_the_median_and_every_round() -> None:
    goals = portfolio.goals(CASES, UPLOAD)
    assert (goals["local_parquet"]["met"], goals["local_parquet"]["every_round"]) == (True, False)
    assert (goals["local_csv"]["met"], goals["local_csv"]["every_round"]) == (True, False)
    assert (goals["upload"]["met"], goals["upload"]["every_round"]) == (True, False)
    assert goals["memory_by_rows"] == {"1000000": 301.0, "5000000": 362.0, "10000000": 366.0}


def test_the_explanation_cost_is_split_into_start_up_and_per_row() -> None:
    # Round 1: 2.0 s plain, 5.0 s explained, start-up 1.0 s and 1.8 s; round 2: 2.2, 4.7, 0.9, 1.9.
    runs = {
        "local_parquet": [_run(2.0, 1), _run(2.2, 1)],
        "local_parquet_explain": [_run(5.0, 1), _run(4.7, 1)],
        "local_parquet_start": [_run(1.0, 1), _run(0.9, 1)],
        "local_parquet_start_explain": [_run(1.8, 1), _run(1.9, 1)],
    }
    cost = portfolio.explanation_cost(runs, 5_000_000)
    assert cost is not None
    assert cost["ratio"] == {"median": 0.434, "min": 0.4, "max": 0.468}
    assert (cost["met"], cost["every_round"]) == (False, False)
    assert cost["start_up_added_s"] == {"median": 0.9, "min": 0.8, "max": 1.0}
    # (3.0 - 0.8) s and (2.5 - 1.0) s over 5,000,000 rows
    assert cost["per_row_added_us"] == {"median": 0.37, "min": 0.3, "max": 0.44}
    assert cost["allowed_added_s"] == {"median": 0.53, "min": 0.5, "max": 0.55}  # a quarter of the plain run
    # Without the start-up cases (results of an older bench), only the ratio.
    older = portfolio.explanation_cost({k: runs[k] for k in ("local_parquet", "local_parquet_explain")}, 5_000_000)
    assert older is not None and "start_up_added_s" not in older


def test_the_summary_has_the_portfolio_goals_table_and_facts() -> None:
    results = {
        "generated_at": "x",
        "machine": {"cpu": "", "cores": 2, "memory_gib": 1, "os": "", "python": "", "load_average_at_start": [0]},
        "settings": {"duration_s": 1, "clients": [1], "fixed_rate_rps": 1, "fixed_rate_users": 1, "rounds": 2},
        "load": [],
        "bulk": None,
        "experiments": {},
        "portfolio": _portfolio(),
    }
    text = report.markdown(results)
    assert "| portfolio, local engine, Parquet → Parquet, 5,000,000 customers, whole command ≥ 1,000,000" in text
    assert "| 1,041,667 (833,333–1,250,000) rows/s | yes | **no** |" in text
    assert "## Portfolio runs (`python -m portfolio.score`, 5,000,000 customers)" in text
    assert "### " not in text
    assert "Spark `local[2]` on the same 5,000,000 rows: 50,000 to 62,500 rows/s" in text
    assert "## What held in every round (2 rounds)" in text


def test_sections_not_run_keep_their_last_results(tmp_path: Path) -> None:
    previous = tmp_path / "results.json"
    previous.write_text(
        json.dumps(
            {
                "generated_at": "earlier",
                "smoke": False,
                "settings": {"rounds": 3},
                "load": [{"key": "monolith"}],
                "bulk": {"paths": []},
                "experiments": {"fault": {"x": 1}},
                "portfolio": {"old": True},
            }
        ),
        encoding="utf-8",
    )
    results: dict[str, Any] = {"smoke": False, "settings": {"rounds": 1}, "load": [], "bulk": None, "experiments": {}}
    results["portfolio"] = {"new": True}
    run.carry_over(results, previous, ran={"portfolio"})
    assert results["portfolio"] == {"new": True}
    assert results["load"] == [{"key": "monolith"}] and results["settings"] == {"rounds": 3}
    assert results["experiments"] == {"fault": {"x": 1}}
    assert results["carried_over"] == {"load": "earlier", "bulk": "earlier", "fault": "earlier"}

    smoke: dict[str, Any] = {"smoke": True, "load": [], "bulk": None, "experiments": {}}
    run.carry_over(smoke, previous, ran={"portfolio"})
    assert "carried_over" not in smoke and smoke["load"] == []


def test_the_launcher_reports_the_commands_own_peak_memory(tmp_path: Path) -> None:
    def measure(code: str) -> dict[str, Any]:
        out = tmp_path / "child.json"
        command = [sys.executable, "-m", "benchmarks.child", str(out), "--", sys.executable, "-c", code]
        subprocess.run(command, cwd=ROOT, check=True)
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result

    big = measure("b = bytearray(300 * 2**20)")  # zero-filled by the kernel on touch: calloc touches it all
    assert big["exit_code"] == 0 and big["max_rss_mib"] >= 300
    # An empty interpreter: far below this test process's own memory, which a plain child would report.
    assert measure("pass")["max_rss_mib"] < 60
