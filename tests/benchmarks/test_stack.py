"""`make bench-stack`'s section, run for real for a few seconds per point: it starts the stack of
the images of `make images`, measures /avaliar through the gateway and the monolith in alternating
rounds, then the gateway on its production limits, and takes the stack down again.

Skipped where podman cannot run containers, where the images are not built (`make images`; the
harness would build them, about 12 minutes from nothing), or where a stack is already up (the bench
never takes down a stack it did not start). Never asserts speed, only the result's shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from benchmarks import stack
from devtools.servers import ROOT, project_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ok, why = stack.usable()
    if not ok:
        pytest.skip(f"the stack cannot run here: {why}")
    log = tmp_path_factory.mktemp("stack-log") / "make.log"
    if stack.make("images-present", log_path=log, timeout_s=120).returncode != 0:
        pytest.skip("the images are not built: make images")
    out = tmp_path_factory.mktemp("bench-stack")
    subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", "stack", "--out", str(out)],
        cwd=ROOT,
        env=project_env(),
        check=True,
        timeout=900,
    )
    results: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results["_summary"] = (out / "summary.md").read_text(encoding="utf-8")
    return results


def test_the_stack_and_the_monolith_alternate_and_every_container_is_sampled(smoke_run: dict[str, Any]) -> None:
    section = smoke_run["stack"]
    clients = section["settings"]["clients"]
    points = section["load"]
    measured = {(p["key"], p["round"], p["clients"]) for p in points}
    for key in ("monolith", stack.STACK_KEY):
        assert {(key, r, c) for r in (1, 2) for c in clients} <= measured, measured
    for point in points:
        if point["key"] == stack.LIMITED_KEY:
            continue
        assert point["ok"] > 0 and point["errors"]["total"] == 0, point
        assert point["path"] == "/avaliar"
    for point in (p for p in points if p["key"] == stack.STACK_KEY):
        assert point["config"]["records"] == "PostgreSQL"
        assert set(point["resources"]) == {"gateway", "evaluation_api", "model_service", "database", "load_generator"}
        for role in ("gateway", "evaluation_api", "model_service", "database"):
            usage = point["resources"][role]
            assert usage["peak_rss_mib"] > 0 and usage["processes"] >= 1, (role, usage)
        assert point["cpu_ms_per_request"]["system"] > 0


def test_the_production_limits_answer_one_address_with_429s(smoke_run: dict[str, Any]) -> None:
    section = smoke_run["stack"]
    assert section["settings"]["limits"]["production"] == {"rate_rps": 10, "burst": 20, "concurrent": 32}
    limited = [p for p in section["load"] if p["key"] == stack.LIMITED_KEY]
    assert {p["clients"] for p in limited} == set(section["settings"]["clients"])
    for point in limited:
        assert point["config"]["gateway_limits"] == section["settings"]["limits"]["production"]
        assert point["ok"] > 0, point  # the burst and the rate get through
        assert point["errors"]["by_status"].get("429", 0) > 0, point  # the rest is refused, not queued
        assert set(point["errors"]["by_status"]) == {"429"}, point


def test_the_run_takes_its_stack_down_and_reports_it(smoke_run: dict[str, Any]) -> None:
    assert stack.existing_containers() == []
    assert "## Through the gateway" in smoke_run["_summary"]
    assert smoke_run["smoke"] is True
