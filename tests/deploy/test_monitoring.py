"""deploy/monitoring/: the alert rules (promtool), the Grafana dashboard and its provisioning, and every
metric their queries read, checked against what the services really export on /metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from contract import FEATURE_NAMES
from evaluation_api.identity.roles import Role
from evaluation_api.main import create_app
from tests.deploy.files import DEPLOY
from tests.deploy.promql import metric_names
from tests.utils import servers
from tests.utils.evaluations import (
    SEGMENT_CUSTOMERS,
    ModelServiceStub,
    TestClient,
    body,
    make_settings,
    predict,
    remove_app_log_handlers,
    until,
)
from tests.utils.identity import bearer, cli_create_key, sign_in_as

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "rules.yml"
DASHBOARD = MONITORING / "grafana" / "credit-eligibility.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: `make system-deps` installs Debian's prometheus package"
)
# Series Prometheus makes itself, not scraped from a service.
PROMETHEUS_OWN = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def queries() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the rules, by where it is."""
    found = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in dashboard()["panels"] for t in p["targets"]}
    found.update({f"rule {r.get('alert') or r.get('record')}": r["expr"] for r in rules()})
    return found


def read_metrics() -> set[str]:
    """The metric names the queries read, less the recording rules' own and Prometheus' own."""
    return {n for expr in queries().values() for n in metric_names(expr)} - recorded() - PROMETHEUS_OWN


def exported(text: str) -> set[str]:
    """Every series name a /metrics page offers, including a declared family with no series yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


# --- the rules ------------------------------------------------------------------------------------------------


@needs_promtool
def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_rules_pass_their_promtool_tests() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_cover_drift_approvals_model_down_5xx_latency_and_overdue_cases() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == {
        "InputDriftHigh",
        "ApprovalRateShift",
        "ModelServiceDown",
        "EvaluationApi5xxRateHigh",
        "EvaluationLatencyAboveDeadline",
        "ReviewCaseOverdue",
        "ReviewClocksMissing",
    }
    assert alerts["InputDriftHigh"]["expr"].strip() == "evaluation_input_psi > 0.25"
    assert alerts["InputDriftHigh"]["for"] == "1h"
    # The deadline in the rule is the API's default evaluation deadline.
    from evaluation_api.config import Settings

    assert Settings.model_fields["evaluation_deadline_s"].default == 2.0
    assert alerts["EvaluationLatencyAboveDeadline"]["expr"].strip().endswith("> 2")


# --- the dashboard --------------------------------------------------------------------------------------------


def test_the_dashboard_has_a_panel_for_each_series() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    read = {n for p in panels for t in p["targets"] for n in metric_names(t["expr"])}
    for name in (
        "evaluation_input_psi",
        "evaluation_segment_share",
        "evaluation_segment_training_share",
        "evaluation_decisions_total",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "up",
        "bentoml_service_request_total",
        "review_cases_open",
    ):
        assert name in read, name
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def test_grafana_provisioning_points_at_the_dashboard_and_kustomize_ships_it() -> None:
    provider = yaml.safe_load((MONITORING / "grafana" / "dashboards.yml").read_text())["providers"][0]
    assert provider["type"] == "file"
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    assert generated["grafana-dashboards"] == ["grafana/credit-eligibility.json"]
    assert provider["options"]["path"] in (MONITORING / "kustomization.yaml").read_text()
    assert set(generated["prometheus-config"]) == {"prometheus.yml", "rules.yml"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("evaluation_input_psi > 0.25", {"evaluation_input_psi"}),
        ('sum by (decision) (rate(a_total{job="x", le="+Inf"}[5m]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval]))) > 2e0", {"h_bucket"}),
        ('abs(x:y:rate1h - x:y:rate7d) > 0.10 or up{job="m"} == 0', {"x:y:rate1h", "x:y:rate7d", "up"}),
        ("sum(increase(a[7d])) / sum(increase(b[7d] offset 1h))", {"a", "b"}),
    ],
)
def test_metric_names_of_a_query(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# --- every query reads a metric the services export ------------------------------------------------------


def test_every_api_metric_the_queries_read_is_on_the_apis_metrics(tmp_path: Path) -> None:
    """In process, on the model service stub: one evaluation per segment, one failure, then a scrape."""
    predict([SEGMENT_CUSTOMERS["least_active"]])  # unpickles the pipeline before the app's deadline runs
    with ModelServiceStub() as stub:
        app = create_app(stub.settings(make_settings(tmp_path, drift_min_evaluations=1)))
        with TestClient(app, raise_server_exceptions=False) as client:
            sign_in_as(client, Role.ANALYST, username="analyst")
            until(lambda: "evaluation_segment_training_share{" in client.get("/metrics").text, what="drift reference")
            for customer in SEGMENT_CUSTOMERS.values():
                assert client.post("/api/v1/evaluations", json=body(**customer)).status_code == 201
            stub.script.extend([503] * 3)
            assert client.post("/api/v1/evaluations", json=body()).status_code == 503
            text = client.get("/metrics").text
    remove_app_log_handlers()
    missing = {n for n in read_metrics() if not n.startswith("bentoml_")} - exported(text)
    assert not missing, f"read by deploy/monitoring/ but not exported by the API: {missing}"
    psi = {
        sample.labels["feature"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "evaluation_input_psi"
    }
    assert psi == set(FEATURE_NAMES)


@pytest.fixture(scope="module")
def api_on_the_real_model_service(
    model_service_server: servers.Server, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[servers.Server]:
    """A real API (PSI after one evaluation) in front of the session's real model service."""
    db = tmp_path_factory.mktemp("monitoring") / "evaluations.db"
    server = servers.evaluation_api(
        model_url=model_service_server.url,
        database_url=f"sqlite:///{db}",
        log_dir=artifacts_dir,
        DRIFT_MIN_EVALUATIONS="1",
    ).start(timeout=60)
    yield server
    server.stop()


@pytest.mark.slow
def test_every_metric_the_queries_read_is_exported_by_the_real_services(
    api_on_the_real_model_service: servers.Server, model_service_server: servers.Server
) -> None:
    api = api_on_the_real_model_service.url
    until(lambda: "evaluation_segment_training_share{" in httpx.get(f"{api}/metrics").text, what="drift reference")
    key = cli_create_key(api_on_the_real_model_service.env["DATABASE_URL"])
    response = httpx.post(f"{api}/api/v1/evaluations", json=body(), headers=bearer(key), timeout=10)
    assert response.status_code == 201, response.text
    names = exported(httpx.get(f"{api}/metrics").text) | exported(httpx.get(f"{model_service_server.url}/metrics").text)
    missing = read_metrics() - names
    assert not missing, f"read by deploy/monitoring/ but exported by neither service: {missing}"
