"""The benchmark harness still works: it runs for a few seconds per system and writes its results.

Never asserts speed (these tests share the machine with everything else); only that the systems
were started, loaded and stopped, that requests succeeded and that the results have their shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run import DEFAULT_DATA
from devtools.servers import ROOT, project_env

pytestmark = pytest.mark.slow


def _run(out: Path, *sections: str) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", ",".join(sections), "--out", str(out)],
        cwd=ROOT,
        env=project_env(),
        check=True,
        timeout=600,
    )
    results: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# Benchmark results")
    return results


def test_load_and_bulk(tmp_path: Path) -> None:
    results = _run(tmp_path, "load", "bulk")

    assert results["smoke"] is True
    keys = {p["key"] for p in results["load"]}
    assert {"monolith", "monolith_workers", "end_to_end", "model_service"} <= keys
    # The fair baseline runs on as many processes as the API has, each counted in its resources.
    fair = next(p for p in results["load"] if p["key"] == "monolith_workers")
    assert fair["resources"]["monolith"]["processes"] > results["settings"]["monolith_workers"]
    assert {p["round"] for p in results["load"]} == {1, 2}  # the systems alternate, round after round
    for point in results["load"]:
        assert point["ok"] > 0, point
        assert point["errors"]["total"] == 0, point
        assert {"p50", "p95", "p99"} <= point["latency_ms"].keys()
        assert point["resources"]["load_generator"]["cpu_seconds"] >= 0
        assert point["cpu_ms_per_request"]["system"] > 0, point
        for role, usage in point["resources"].items():
            if role != "load_generator":
                assert usage["peak_rss_mib"] > 0, (role, usage)
    modes = {(p["key"], p["mode"]) for p in results["load"]}
    assert ("monolith", "fixed_rate") in modes
    assert ("monolith", "closed_loop") in modes
    headline = next(p for p in results["bulk"]["paths"] if p["headline"])
    assert headline["customers_per_s"] > 0
    assert {
        "end_to_end_vs_monolith",
        "end_to_end_vs_monolith_workers",
        "requests_per_busy_core",
        "model_service_vs_monolith",
        "one_client_p50",
        "bulk",
    } <= results["goals"].keys()
    assert "## Fair baselines" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert (tmp_path / "load.png").stat().st_size > 0
    assert (tmp_path / "resources.png").stat().st_size > 0


@pytest.mark.skipif(not DEFAULT_DATA.is_file(), reason=f"the rollout trains on {DEFAULT_DATA}")
def test_experiments(tmp_path: Path) -> None:
    results = _run(tmp_path, "fault", "rollout", "scaling")

    fault = results["experiments"]["fault"]
    assert fault["records"]["equal"], fault["records"]
    assert fault["while_down"]["failed"] > 0  # the model service really was down
    assert set(fault["timeline"]["pages"]["/"]["by_status"]) == {"200"}  # the form stayed up
    assert fault["recovery"]["first_success_after_model_ready_s"] is not None  # and evaluations came back

    rollout = results["experiments"]["rollout"]
    assert rollout["records"]["equal"], rollout["records"]
    assert rollout["versions_check"]["ok"], rollout["versions_check"]
    assert set(rollout["versions_check"]["records_by_version"]) == set(rollout["versions"].values())

    assert [r["model_workers"] for r in results["experiments"]["scaling"]["runs"]] == [1, 2]
    for name in ("fault.png", "rollout.png", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_portfolio(tmp_path: Path) -> None:
    results = _run(tmp_path, "portfolio")

    p = results["portfolio"]
    assert set(p["cases"]) == {
        "local_parquet_small",
        "local_parquet",
        "local_parquet_explain",
        "local_parquet_start",
        "local_parquet_start_explain",
        "local_parquet_large",
        "local_csv",
        "spark_local2_parquet",
    }
    for case in p["cases"].values():
        assert case["rounds"] == 1
        for r in case["runs"]:
            assert r["max_rss_mib"] > 0 and r["tree_peak_rss_mib"] > 0 and r["cpu_s"] > 0, r
    assert p["cases"]["spark_local2_parquet"]["runs"][0]["job_s"] > 0
    assert [r["engine_rows_per_s"] > 0 for r in p["upload_path"]["runs"]] == [True]
    assert {"local_parquet", "local_csv", "memory_by_rows", "upload"} <= p["goals"].keys()
    assert json.loads((tmp_path / "portfolio.json").read_text(encoding="utf-8")) == p
    assert "## Portfolio runs" in (tmp_path / "summary.md").read_text(encoding="utf-8")
