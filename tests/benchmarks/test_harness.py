"""The harness's pure parts: parsing wrk's output, summarising locust's log, the report and its splice."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import load, report, systems
from benchmarks.loadgen import locust_runner, wrk
from devtools.servers import ROOT


def _wrk_line(**overrides: Any) -> str:
    raw = {
        "duration_us": 6_300_000,
        "requests": 1200,
        "bytes": 1,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0},
        "latency_us": {"p50": 1500, "p90": 2000, "p95": 2500, "p99": 4000, "p999": 9000, "max": 12000, "mean": 1600.0},
        "statuses": {"200": 1198, "503": 2},
        "per_second_ok": {"100": 600, "101": 598},
        "per_second_err": {"101": 2},
    }
    raw.update(overrides)
    return "Running 6s test\n" + wrk.MARKER + json.dumps(raw) + "\n"


def test_wrk_result_counts_only_2xx_as_throughput_and_every_failure_as_an_error() -> None:
    result = wrk.parse(_wrk_line())

    assert result.ok == 1198
    assert result.duration_s == 6.0  # the held first requests are not part of the run
    assert result.throughput_rps == 1198 / 6.0
    d = result.as_dict()
    socket = {"connect": 0, "read": 1, "write": 0, "timeout": 0}
    assert d["errors"] == {"total": 3, "by_status": {"503": 2}, "socket": socket}
    assert d["latency_ms"]["p99"] == 4.0
    assert d["per_second"] == [{"t": 100, "ok": 600, "errors": 0}, {"t": 101, "ok": 598, "errors": 2}]


def test_wrk_script_holds_the_first_request_of_each_connection() -> None:
    lua = wrk.script(path="/avaliar", bodies=[b'{"a": "]]"}'], connections=64)

    assert "local conns_per_thread = 32" in lua
    assert '[=[{"a": "]]"}]=]' in lua  # a body with ]] still makes a valid long string
    assert "Authorization" not in lua


def test_wrk_script_sends_the_configured_headers() -> None:
    lua = wrk.script(path="/avaliar", bodies=[b"{}"], connections=1, headers={"Authorization": "Bearer k]]"})

    assert "wrk.headers[ [[Authorization]] ] = [=[Bearer k]]]=]" in lua


def test_the_api_key_setting_becomes_an_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(systems.API_KEY_ENV, raising=False)
    assert systems.evaluation_api_headers() == {}
    monkeypatch.setenv(systems.API_KEY_ENV, "s3cret")
    assert systems.evaluation_api_headers() == {"Authorization": "Bearer s3cret"}


def test_cpu_per_request_sums_the_system_without_the_load_tool() -> None:
    resources = {
        "evaluation_api": {"cpu_seconds": 2.0},
        "model_service": {"cpu_seconds": 1.0},
        "load_generator": {"cpu_seconds": 0.5},
    }

    cpu = load.cpu_per_request(resources, 4000)

    assert cpu == {"evaluation_api": 0.5, "model_service": 0.25, "load_generator": 0.125, "system": 0.75}


def test_benchmarks_do_not_import_the_tests() -> None:
    for path in (ROOT / "benchmarks").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "tests" or n.startswith("tests.") for n in names), (path, names)


def _row(start: float, status: int, latency: float = 10.0, method: str = "POST") -> dict[str, Any]:
    return {
        "method": method,
        "path": "/x",
        "start": start,
        "latency_ms": latency,
        "status": status,
        "body": 0,
        "id": None,
        "version": None,
        "exception": None,
    }


def test_locust_summary_counts_within_the_window_and_by_status() -> None:
    rows = [
        _row(0.5, 200),
        _row(1.0, 200, 20.0),
        _row(1.5, 503, 2.0),
        _row(2.0, 0, 1.0),
        _row(3.5, 200),
        _row(1.2, 200, method="GET"),
    ]

    s = locust_runner.summarize(rows, window=(1.0, 3.0))

    assert (s["requests"], s["ok"], s["throughput_rps"], s["offered_rps"]) == (3, 1, 0.5, 1.5)
    assert s["errors"] == {"total": 2, "by_status": {"503": 1}, "socket": 1}
    per_second = locust_runner.per_second(rows, t0=0.0)
    assert [b["requests"] for b in per_second] == [1, 2, 1, 1]
    assert per_second[1]["errors"] == {"503": 1}


def _point(key: str, clients: int, rps: float, p99: float, round_no: int = 1, cpu: float = 0.5) -> dict[str, Any]:
    return {
        "key": key,
        "round": round_no,
        "mode": "closed_loop",
        "clients": clients,
        "throughput_rps": rps,
        "ok": 100,
        "latency_ms": {"p50": p99 / 2, "p95": p99, "p99": p99},
        "errors": {"total": 0, "by_status": {}, "socket": {}},
        "resources": {"monolith": {"cpu_cores": 1.0, "peak_rss_mib": 190.0}},
        "machine_cpu": {"other_cores": 0.1},
        "cpu_ms_per_request": {"monolith": cpu, "load_generator": 0.01, "system": cpu},
    }


RESULTS: dict[str, Any] = {
    "generated_at": "2026-01-01T00:00:00+00:00",
    "smoke": False,
    "elapsed_s": 200.0,
    "machine": {
        "cpu": "x",
        "cores": 2,
        "memory_gib": 24,
        "os": "linux",
        "python": "3.11",
        "wrk": "wrk 4",
        "git_commit": "abc",
        "load_average_at_start": [0.1, 0.1, 0.1],
    },
    "settings": {"duration_s": 6, "clients": [1, 64], "fixed_rate_rps": 400, "fixed_rate_users": 64, "rounds": 3},
    "load": [
        # Three rounds; end to end is 1.3x, 1.1x and 1.25x the monolith in them (median 1.25x).
        _point("monolith", 1, 900, 2, 1),
        _point("monolith", 64, 1000, 80, 1),
        _point("end_to_end", 1, 600, 1.5, 1),
        _point("end_to_end", 64, 1300, 60, 1),
        _point("model_service", 64, 1600, 90, 1),
        _point("monolith", 1, 900, 2, 2),
        _point("monolith", 64, 1000, 80, 2, cpu=0.7),
        _point("end_to_end", 1, 600, 1.5, 2),
        _point("end_to_end", 64, 1100, 60, 2),
        _point("model_service", 64, 1600, 90, 2),
        _point("monolith", 1, 900, 2, 3),
        _point("monolith", 64, 1200, 80, 3, cpu=0.6),
        _point("end_to_end", 1, 600, 1.5, 3),
        _point("end_to_end", 64, 1500, 60, 3),
        _point("model_service", 64, 1500, 90, 3),
    ],
    "bulk": {
        "paths": [
            {
                "path": "/predict_bulk",
                "customers": 100_000,
                "request_mb": 3.6,
                "seconds": [0.1],
                "customers_per_s": 1_000_000,
                "headline": True,
            }
        ]
    },
    "experiments": {},
}


def test_goals_take_each_ratio_within_a_round_and_judge_the_median_and_every_round() -> None:
    goals = report.goals(RESULTS)

    e2e = goals["end_to_end_vs_monolith"]
    assert e2e["per_round"] == [1.3, 1.1, 1.25]
    assert e2e["ratio"] == {"median": 1.25, "min": 1.1, "max": 1.3}
    assert e2e["met"]  # the median is above 1.2x, p99 lower, no errors
    assert not e2e["every_round"]  # round 2 was below 1.2x
    model = goals["model_service_vs_monolith"]
    assert model["per_round"] == [1.6, 1.6, 1.25]
    assert (model["met"], model["every_round"]) == (True, False)
    assert goals["one_client_p50"]["met"] and goals["one_client_p50"]["every_round"]
    assert goals["cpu_ms_per_request"]["monolith"] == {"median": 0.6, "min": 0.5, "max": 0.7}
    assert goals["bulk"]["met"]


def test_a_point_over_rounds_is_the_median_with_its_spread() -> None:
    point = report._point(RESULTS, "end_to_end", 64)

    assert point is not None
    assert point["rounds"] == 3
    assert point["throughput_rps"] == 1300
    assert point["spread"]["throughput_rps"] == [1100, 1500]
    assert report._spread(point, "throughput_rps") == "1,300 (1,100–1,500)"


def test_the_document_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "ARCHITECTURE.md"
    doc.write_text(f"# Doc\n\nbefore\n\n{report.BEGIN}\nold numbers\n{report.END}\n\nafter\n", encoding="utf-8")

    assert report.splice(doc, RESULTS, images="results/")

    text = doc.read_text(encoding="utf-8")
    assert "old numbers" not in text
    assert text.startswith("# Doc\n\nbefore\n") and text.endswith("after\n")
    assert "### Goals" in text and "# Benchmark results" not in text
    assert "(results/load.png)" in text
    assert "1.25× (1.10–1.30)" in text
    assert "### What held in every round (3 rounds)" in text


def test_the_explanations_cost_is_judged_within_each_round_at_one_client_and_at_the_top() -> None:
    load = list(RESULTS["load"])
    # Without explanations: 64 clients 1,400, 1,150 and 1,560 req/s against 1,300, 1,100 and 1,500 (0.93x,
    # 0.96x, 0.96x); one client, p50 0.70 ms against 0.75 (p99 1.5 → p50 0.75), 0.05 ms added in every round.
    for round_no, rps in ((1, 1400), (2, 1150), (3, 1560)):
        load += [
            _point("end_to_end_unexplained", 1, 620, 1.4, round_no),
            _point("end_to_end_unexplained", 64, rps, 55, round_no),
        ]
    cost = report.goals({**RESULTS, "load": load})["explanation_cost"]
    assert cost["throughput_ratio"] == {"median": 0.96, "min": 0.93, "max": 0.96}
    assert cost["one_client_p50_added_ms"] == {"median": 0.05, "min": 0.05, "max": 0.05}
    assert (cost["met"], cost["every_round"]) == (True, True)
    # A round at 0.85x is not within the goal, though the median still is.
    load[-1] = _point("end_to_end_unexplained", 64, 1765, 55, 3)
    cost = report.goals({**RESULTS, "load": load})["explanation_cost"]
    assert (cost["met"], cost["every_round"]) == (True, False)
    assert "explaining every decision" in report.markdown({**RESULTS, "load": load})


def test_the_fair_baseline_is_compared_within_each_round_and_every_system_per_busy_core() -> None:
    load = list(RESULTS["load"])
    # The monolith on two workers: 1,250, 1,000 and 1,500 req/s against end to end's 1,300, 1,100 and
    # 1,500 (1.04x, 1.1x, 1.0x), keeping 1.6 cores busy; the one-process monolith keeps 1.0 busy.
    for round_no, rps in ((1, 1250), (2, 1000), (3, 1500)):
        point = _point("monolith_workers", 64, rps, 70, round_no)
        point["resources"] = {
            "monolith": {"cpu_cores": 1.6, "peak_rss_mib": 400.0},
            "load_generator": {"cpu_cores": 0.4, "peak_rss_mib": 10.0},
        }
        load.append(point)
    results = {**RESULTS, "load": load, "settings": {**RESULTS["settings"], "monolith_workers": 2}}
    goals = report.goals(results)

    fair = goals["end_to_end_vs_monolith_workers"]
    assert fair["per_round"] == [1.04, 1.1, 1.0]
    assert fair["ratio"]["median"] == 1.04
    assert fair["workers"] == 2
    per_core = goals["requests_per_busy_core"]
    # The load tool's 0.4 cores are not the system's: 1,250 / 1.6 = 781, 1,000 / 1.6 = 625, 1,500 / 1.6 = 938.
    assert per_core["monolith_workers"] == {"median": 781, "min": 625, "max": 938}
    assert per_core["monolith"] == {"median": 1000, "min": 1000, "max": 1200}
    text = report.markdown(results)
    assert "## Fair baselines (64 clients)" in text
    assert "1.04×, 1.10×, 1.00× (median 1.04×)" in text
    row = "| monolith, as many uvicorn workers as the API has processes | 1,250 (1,000–1,500) | 1.60 | 781 (625–938) |"
    assert row in text
    # Without the fair baseline in the run, the section is not written (nothing to compare).
    assert "Fair baselines" not in report.markdown(RESULTS)


def test_every_system_the_bench_runs_has_a_label_a_short_name_and_a_colour() -> None:
    for key in report.ORDER:
        assert key in report.LABELS and key in report.SHORT and key in report.COLORS, key
    assert set(report.HEADLINE_KEYS) <= set(report.ORDER)
