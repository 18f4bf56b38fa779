"""The stack section's pure parts (benchmarks/stack.py and what reports it): the gateway's limits as
its configuration writes them, the section opt-in and carried over by a full run, the summary and the
report's figures from its own rounds. A real tiny run is in test_stack.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import docs, report, run, stack
from tests.benchmarks.test_harness import RESULTS


def _stack_point(key: str, clients: int, rps: float, round_no: int, *, rate_limited: int = 0) -> dict[str, Any]:
    roles = (
        {"monolith": 0.9}
        if key == "monolith"
        else {"gateway": 0.1, "evaluation_api": 0.6, "model_service": 0.2, "database": 0.1}
    )
    return {
        "key": key,
        "system": key,
        "round": round_no,
        "mode": "closed_loop",
        "clients": clients,
        "duration_s": 6.0,
        "throughput_rps": rps,
        "ok": int(rps * 6),
        "latency_ms": {"p50": 2.0 if key == "monolith" else 5.0, "p95": 9.0, "p99": 10.0},
        "errors": {
            "total": rate_limited,
            "by_status": {"429": rate_limited} if rate_limited else {},
            "socket": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        },
        "resources": {
            **{role: {"cpu_cores": cores, "peak_rss_mib": 100.0, "processes": 2} for role, cores in roles.items()},
            "load_generator": {"cpu_cores": 0.1, "peak_rss_mib": 5.0, "processes": 1},
        },
        "machine_cpu": {"busy_cores": 1.2, "other_cores": 0.1},
        "cpu_ms_per_request": {"system": 1.0},
    }


def _stack_section() -> dict[str, Any]:
    load = []
    # The stack 500, 400 and 600 req/s at 64 clients against the monolith's 1,000 in each round
    # (0.5x, 0.4x, 0.6x); per busy core 500/1.0 against 1,000/0.9 (0.45x) and so on.
    for round_no, rps in ((1, 500.0), (2, 400.0), (3, 600.0)):
        load += [
            _stack_point("monolith", 1, 900.0, round_no),
            _stack_point("monolith", 64, 1000.0, round_no),
            _stack_point(stack.STACK_KEY, 1, 200.0, round_no),
            _stack_point(stack.STACK_KEY, 64, rps, round_no),
        ]
    load += [
        _stack_point(stack.LIMITED_KEY, 1, 13.3, 1, rate_limited=9000),
        _stack_point(stack.LIMITED_KEY, 64, 13.0, 1, rate_limited=40000),
    ]
    limits = {
        "production": {"rate_rps": 10, "burst": 20, "concurrent": 32},
        "bench": {"rate_rps": 1_000_000, "burst": 1_000_000, "concurrent": 4096},
    }
    return {"settings": {"clients": [1, 64], "duration_s": 6.0, "rounds": 3, "limits": limits}, "load": load}


def test_the_production_limits_are_read_from_the_committed_gateway_config() -> None:
    assert stack.gateway_limits(stack.GATEWAY_CONF.read_text(encoding="utf-8")) == {
        "rate_rps": 10,
        "burst": 20,
        "concurrent": 32,
    }
    assert stack.limits_settings()["bench"]["rate_rps"] > 1000
    assert stack.refill_s({"rate_rps": 10, "burst": 20, "concurrent": 32}) == 3.0


def test_the_stack_is_measured_when_asked_for_and_a_full_run_keeps_its_last_results(tmp_path: Path) -> None:
    assert "stack" not in run.ran(argparse.Namespace(only=""))
    assert run.ran(argparse.Namespace(only="stack")) == {"stack"}
    previous = tmp_path / "results.json"
    previous.write_text(
        json.dumps({**RESULTS, "generated_at": "2026-01-01T00:00:00+00:00", "stack": _stack_section()}),
        encoding="utf-8",
    )
    full: dict[str, Any] = {"smoke": False, "load": [], "experiments": {}, "settings": {}}
    run.carry_over(full, previous, ran=set(run.DEFAULT_SECTIONS))
    assert full["stack"] == _stack_section()
    assert full["carried_over"] == {"stack": "2026-01-01T00:00:00+00:00"}
    assert full["load"] == []  # what this run measured stays its own

    # The stack alone: the other sections carried, and with them the header of the run they come from
    # (the stack keeps its own date and machine).
    alone: dict[str, Any] = {
        "smoke": False,
        "generated_at": "2026-02-02T00:00:00+00:00",
        "machine": {"git_commit": "new"},
        "load": [],
        "experiments": {},
        "settings": {},
        "stack": {**_stack_section(), "generated_at": "2026-02-02T00:00:00+00:00", "machine": {"git_commit": "new"}},
    }
    run.carry_over(alone, previous, ran={"stack"})
    assert (alone["generated_at"], alone["machine"]) == (RESULTS["generated_at"], RESULTS["machine"])
    assert alone["load"] == RESULTS["load"] and alone["stack"]["machine"] == {"git_commit": "new"}
    assert "stack" not in alone["carried_over"] and "load" in alone["carried_over"]


def test_the_summary_compares_the_stack_within_its_own_rounds_and_counts_the_429s() -> None:
    text = report.markdown({**RESULTS, "stack": _stack_section()})

    section = text[text.index("## Through the gateway") :]
    assert "Measured by `make bench-stack` on ?" in section  # a section without its stamp says so
    assert "0.50×, 0.40×, 0.60× (median 0.50×)" in section
    assert "per busy core 0.45×, 0.36×, 0.54×." in section
    assert "13.0 answers 2xx per second and 40,000 answers 429 in 6.0 s" in section
    assert "| 40000 (429: 40000) |" in section
    assert "gateway 100, evaluation API 100, model service 100, PostgreSQL 100" in section
    # The load section's monolith is not the stack's baseline: its rounds are another section's.
    assert "## Through the gateway" not in report.markdown(RESULTS)


def test_the_report_quotes_the_stack_from_its_section_and_says_when_it_was_not_measured() -> None:
    card = json.loads(docs.MODEL_CARD.read_text(encoding="utf-8"))
    conf = docs.GATEWAY_CONF.read_text(encoding="utf-8")
    base = {**RESULTS, "load": [{**p, "system": p["key"], "duration_s": 6.0} for p in RESULTS["load"]]}
    results = {**base, "stack": _stack_section()}
    ctx = docs.context(results, None, gateway_conf=conf, card=card)

    st = ctx["s"][docs.STACK_KEY][64]
    assert st["rps"] == {"median": 500.0, "min": 400.0, "max": 600.0}
    assert set(st["memory_mib"]) == {"gateway", "evaluation_api", "model_service", "database"}
    vs = ctx["vs"]["stack_monolith"]
    assert vs["ratio"] == {"median": 0.5, "min": 0.4, "max": 0.6}
    assert vs["rounds"] == 3
    limited = ctx["stack"]["s"][docs.LIMITED_KEY][64]
    assert limited["rate_limited"] == 40000 and limited["rps"]["median"] == 13.0
    assert ctx["gateway"] == {"rate_rps": 10, "burst": 20, "concurrent": 32}

    without = docs.context(base, None, gateway_conf=conf, card=card)
    assert without["stack"] is None and without["vs"]["stack_monolith"] is None
    assert without["s"][docs.STACK_KEY][64] is None
