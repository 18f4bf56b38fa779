"""The harness's pure parts: parsing wrk's output, summarising locust's log, the report and its splice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.loadgen import locust_runner, wrk


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


def _point(key: str, clients: int, rps: float, p99: float) -> dict[str, Any]:
    return {
        "key": key,
        "mode": "closed_loop",
        "clients": clients,
        "throughput_rps": rps,
        "ok": 100,
        "latency_ms": {"p50": p99 / 2, "p95": p99, "p99": p99},
        "errors": {"total": 0, "by_status": {}, "socket": {}},
        "resources": {"monolith": {"cpu_cores": 1.0, "peak_rss_mib": 190.0}},
        "machine_cpu": {"other_cores": 0.1},
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
    "settings": {"duration_s": 6, "clients": [1, 64], "fixed_rate_rps": 400, "fixed_rate_users": 64},
    "load": [
        _point("monolith", 1, 900, 2),
        _point("monolith", 64, 1000, 80),
        _point("end_to_end", 1, 100, 20),
        _point("end_to_end", 64, 1100, 60),
        _point("model_service_batching_on_1w", 64, 1600, 90),
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


def test_goals_compare_the_highest_concurrency_side_by_side() -> None:
    goals = report.goals(RESULTS)

    assert goals["end_to_end_vs_monolith"]["ratio"] == 1.1
    assert goals["end_to_end_vs_monolith"]["met"]  # more throughput, lower p99, no errors
    assert goals["model_service_vs_monolith"] == {
        "best": "model_service_batching_on_1w",
        "ratio": 1.6,
        "goal": 1.5,
        "errors": 0,
        "met": True,
    }
    assert goals["bulk"]["met"]


def test_the_document_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "ARCHITECTURE.md"
    doc.write_text(f"# Doc\n\nbefore\n\n{report.BEGIN}\nold numbers\n{report.END}\n\nafter\n", encoding="utf-8")

    assert report.splice(doc, RESULTS, images="results/")

    text = doc.read_text(encoding="utf-8")
    assert "old numbers" not in text
    assert text.startswith("# Doc\n\nbefore\n") and text.endswith("after\n")
    assert "### Goals" in text and "# Benchmark results" not in text
    assert "(results/load.png)" in text
    assert "1.10×" in text
