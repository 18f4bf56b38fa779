"""Portfolio runs through the API: upload → 202 → queued → running → succeeded/failed → download, with
the real worker process (python -m portfolio.worker) on the test's database and run directory; the
cheap checks of an upload (422, 413); per-run access; the audit events of a download; recovery and
retention."""

from __future__ import annotations

import csv
import io
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from contract import DECISIONS, FEATURE_NAMES, FEATURES, SEGMENTS_BY_KEY
from decisioning.explanation import explain
from decisioning.policy import load_policy
from devtools.portfolio_worker import running_worker
from evaluation_api.identity.roles import Role
from evaluation_api.portfolio_runs import store as runs
from portfolio.batch import EXPLANATION_COLUMNS, NO_COUNTERFACTUAL
from portfolio.model import load_geometry, read_verified
from tests.evaluation_api.conftest import app_of
from tests.utils.evaluations import TestClient
from tests.utils.identity import bearer, create_account, token

CANDIDATE_POLICY = Path(__file__).resolve().parents[1] / "portfolio" / "candidate_policy.yaml"
URL = "/api/v1/portfolio-runs"
RUN_DEADLINE_S = 180  # the worker's start (scikit-learn, pyarrow) and a small file, on a busy machine


def portfolio_csv(rows: int, *, seed: int = 7, snake_case: bool = False) -> bytes:
    """A portfolio with an id column and the five figures (cc_general.csv's names, or the API's)."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    names = [f.name for f in FEATURES] if snake_case else [f.csv_column for f in FEATURES]
    writer.writerow(["CUST_ID", *names])
    for i in range(rows):
        figures = [round(rng.uniform(0, 5000), 2) for _ in FEATURES]
        figures[3] = round(rng.uniform(500, 20000), 2)  # credit limit > 0
        writer.writerow([f"C{i:05d}", *figures])
    return out.getvalue().encode()


def upload(
    client: TestClient,
    content: bytes,
    *,
    name: str = "carteira.csv",
    candidate: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    files: dict[str, tuple[str, bytes, str]] = {"file": (name, content, "text/csv")}
    if candidate is not None:
        files["candidate_policy"] = ("candidata.yaml", candidate, "application/yaml")
    return client.post(URL, files=files, headers=headers)


def wait_finished(client: TestClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_DEADLINE_S
    seen = []
    while time.monotonic() < deadline:
        answer = client.get(f"{URL}/{run_id}")
        assert answer.status_code == 200, answer.text
        run: dict[str, Any] = answer.json()
        seen.append(run["status"])
        if run["status"] in runs.FINISHED:
            assert set(seen) <= set(runs.STATUSES)
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not finished after {RUN_DEADLINE_S}s: {seen[-5:]}")


@pytest.fixture
def with_worker(start_app: Callable[..., Any], tmp_path: Path) -> Iterator[TestClient]:
    """The app (signed in as `analyst`), then the real worker on the same SQLite file and run directory."""
    with start_app() as client:
        settings = app_of(client).state.settings
        with running_worker(
            database_url=settings.database_url,
            run_dir=settings.portfolio_run_dir,
            log_path=tmp_path / "worker.log",
            PORTFOLIO_EXPLAIN="true",  # the explanation columns (off by default), checked below
        ):
            yield client


@pytest.mark.slow
def test_the_life_cycle_upload_poll_summary_download_and_audit(with_worker: TestClient) -> None:
    client = with_worker
    rows = 500
    answer = upload(client, portfolio_csv(rows), candidate=CANDIDATE_POLICY.read_bytes())
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["status"] == "queued" and created["rows_done"] == 0
    assert created["candidate_policy"] is True and created["file_name"] == "carteira.csv"
    assert answer.headers["location"] == f"{URL}/{created['id']}"
    run_id = created["id"]

    run = wait_finished(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["rows_done"] == run["rows_total"] == rows
    summary = run["summary"]
    assert summary["rows_total"] == rows and summary["rows_invalid"] == 0
    assert sum(summary["by_decision"].values()) == rows
    assert sum(sum(row.values()) for row in summary["swap"].values()) == rows
    assert run["result"] == {
        "csv": f"{URL}/{run_id}/result?format=csv",
        "parquet": f"{URL}/{run_id}/result?format=parquet",
    }

    as_csv = client.get(run["result"]["csv"])
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert f"carteira-{run_id}.csv" in as_csv.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["customer_id"] for r in table] == [f"C{i:05d}" for i in range(rows)]
    assert {"decision", "reasons", "decision_b", "reasons_b", "segment_key"} <= set(table[0])

    as_parquet = client.get(run["result"]["parquet"])
    assert as_parquet.status_code == 200 and as_parquet.content[:4] == b"PAR1"
    parquet = pq.read_table(io.BytesIO(as_parquet.content))
    assert parquet.column("customer_id").to_pylist() == [r["customer_id"] for r in table]
    assert parquet.column("decision").to_pylist() == [r["decision"] for r in table]
    # Each row explained as the API explains an evaluation (the live policy: the seed, policy.yaml).
    assert list(parquet.column_names[-4:]) == list(EXPLANATION_COLUMNS)
    geometry, policy = load_geometry(read_verified()), load_policy(app_of(client).state.settings.policy_path)
    inputs = list(csv.DictReader(io.StringIO(portfolio_csv(rows).decode())))
    for source, out in zip(inputs, parquet.to_pylist(), strict=True):
        figures = {f.name: float(source[f.csv_column]) for f in FEATURES}
        decision = out["decision"]
        stored = explain(geometry, policy, figures, SEGMENTS_BY_KEY[out["segment_key"]].id, decision)
        assert stored is not None and decision in DECISIONS
        assert out["top_reason"] == stored["factors"][0][0] and out["top_reason"] in FEATURE_NAMES
        counterfactual = stored["counterfactual"]
        if counterfactual is None:
            assert (out["counterfactual_feature"], out["counterfactual_value"]) == (NO_COUNTERFACTUAL, None)
        else:
            assert [out[c] for c in EXPLANATION_COLUMNS[1:]] == [counterfactual[i] for i in (0, 1, 3)]

    # Listed among the caller's own.
    assert [r["id"] for r in client.get(URL).json()["items"]] == [run_id]

    # Another analyst: 404, as if it did not exist; an auditor reads it and sees the downloads.
    create_account(client, "outra.analista", Role.ANALYST)
    other = bearer(token(client, "outra.analista", Role.ANALYST))
    assert client.get(f"{URL}/{run_id}", headers=other).status_code == 404
    assert client.get(f"{URL}/{run_id}/result", headers=other).status_code == 404
    assert client.get(URL, headers=other).json()["items"] == []
    create_account(client, "auditora", Role.AUDITOR)
    auditor = bearer(token(client, "auditora", Role.AUDITOR))
    assert client.get(f"{URL}/{run_id}", headers=auditor).status_code == 200
    events = client.get("/api/v1/audit", params={"record_id": run_id}, headers=auditor).json()["items"]
    actions = sorted((e["action"], e["actor"], (e["details"] or {}).get("format")) for e in events)
    assert actions == [
        ("portfolio_run.create", "analyst", None),
        ("portfolio_run.download", "analyst", "csv"),
        ("portfolio_run.download", "analyst", "parquet"),
    ]


@pytest.mark.slow
def test_a_file_the_engine_refuses_fails_with_the_engines_reason(with_worker: TestClient) -> None:
    client = with_worker
    good = portfolio_csv(20, snake_case=True).decode()
    header, _, body = good.partition("\n")
    duplicated = (header + ",BALANCE\n" + body.replace("\n", ",1\n")).encode()  # balance twice, in two spellings
    answer = upload(client, duplicated)
    assert answer.status_code == 202, answer.text
    run = wait_finished(client, answer.json()["id"])
    assert run["status"] == "failed"
    assert "BALANCE" in run["error"] or "balance" in run["error"], run["error"]
    assert run["summary"] is None and run["result"] is None
    assert client.get(f"{URL}/{run['id']}/result").status_code == 409

    # A malformed row: the engine names it.
    malformed = (good + "C99999,1,2,3\n").encode()
    run = wait_finished(client, upload(client, malformed).json()["id"])
    assert run["status"] == "failed" and run["error"], run


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "vazio"),
        (b'{"customers": [1, 2, 3]}', "BALANCE"),
        (b"CUST_ID,BALANCE,PURCHASES\nC1,1,2\n", "CASH_ADVANCE"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binário"),
    ],
)
def test_an_upload_that_is_not_a_table_is_422_naming_the_file(
    client: TestClient, content: bytes, needle: str, tmp_path: Path
) -> None:
    answer = upload(client, content)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["field"] == "file" and error["rule"] == "table" and needle in error["message"]
    assert client.get(URL).json()["items"] == []  # nothing half-made
    assert not any((tmp_path / "portfolio-runs").glob("*/input.*"))


def test_the_upload_field_and_the_candidate_policy_are_checked(client: TestClient) -> None:
    missing = client.post(URL, files={"other": ("x.csv", portfolio_csv(2), "text/csv")})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "file"
    refused = upload(client, portfolio_csv(2), candidate=b"version: x\nsegments: nope\n")
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "candidate_policy"
    # The analyst is told where: the line of the setting and the rule it breaks.
    assert "line 2: segments: " in refused.json()["errors"][0]["message"]


def test_an_upload_over_the_limit_is_413(start_app: Callable[..., Any]) -> None:
    with start_app(portfolio_max_upload_bytes=1024) as client:
        answer = upload(client, portfolio_csv(200))
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "payload_too_large"


def test_queued_until_a_worker_takes_it_and_no_result_before(client: TestClient) -> None:
    answer = upload(client, portfolio_csv(5, snake_case=True))
    assert answer.status_code == 202
    run_id = answer.json()["id"]
    assert client.get(f"{URL}/{run_id}").json()["status"] == "queued"
    result = client.get(f"{URL}/{run_id}/result", params={"format": "parquet"})
    assert result.status_code == 409 and result.json()["error"] == "run_not_finished"
    assert client.get(f"{URL}/{run_id}/result", params={"format": "xlsx"}).status_code == 422


def test_only_analysts_start_runs(client: TestClient) -> None:
    for role in (Role.AUDITOR, Role.REVIEWER, Role.SYSTEM, Role.ADMIN):
        create_account(client, f"x-{role.value}", role)
        answer = upload(client, portfolio_csv(2), headers=bearer(token(client, f"x-{role.value}", role)))
        assert answer.status_code == 403, role


def test_recovery_fails_runs_a_crash_left_running_and_purge_removes_old_files(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = app_of(client).state.engine
    settings = app_of(client).state.settings
    ids = [upload(client, portfolio_csv(3)).json()["id"] for _ in range(3)]
    assert runs.start(engine, ids[0], worker="host-a:123")
    assert runs.start(engine, ids[1], worker="host-b:456")
    assert runs.recover(engine, host="host-a", stale_after_s=3600) == [ids[0]]
    first = client.get(f"{URL}/{ids[0]}").json()
    assert first["status"] == "failed" and first["error"] == runs.INTERRUPTED
    assert client.get(f"{URL}/{ids[1]}").json()["status"] == "running"
    assert client.get(f"{URL}/{ids[2]}").json()["status"] == "queued"  # never started: left to the queue

    # Retention: only finished runs older than the limit lose their files.
    directory = settings.portfolio_run_dir / ids[0]
    assert (directory / runs.INPUT_CSV).is_file()
    assert runs.purge(engine, settings.portfolio_run_dir, older_than_days=1) == []
    real_now = runs.now
    monkeypatch.setattr(runs, "now", lambda: real_now() + timedelta(days=2))
    assert runs.purge(engine, settings.portfolio_run_dir, older_than_days=1) == [ids[0]]
    assert not directory.exists()
    assert (settings.portfolio_run_dir / ids[2] / runs.INPUT_CSV).is_file()


def test_the_worker_applies_the_retention_once_a_day(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from portfolio import worker

    engine = app_of(client).state.engine
    settings = app_of(client).state.settings
    run_id = upload(client, portfolio_csv(3)).json()["id"]
    runs.start(engine, run_id, worker="host-a:1")
    runs.recover(engine, host="host-a", stale_after_s=3600)  # finished (failed): its files may go
    tasks = worker.schedule(runs.queue_for(settings.portfolio_run_dir).huey, engine, settings)
    assert tasks["purge"].task_class().validate_datetime(datetime(2026, 11, 27, 3, 30))
    assert not tasks["purge"].task_class().validate_datetime(datetime(2026, 11, 27, 4, 30))
    assert tasks["recover"].task_class().validate_datetime(datetime(2026, 11, 27, 4, 31))

    tasks["purge"].call_local()
    assert (settings.portfolio_run_dir / run_id / runs.INPUT_CSV).is_file()  # younger than the retention
    real_now = runs.now
    days = settings.portfolio_retention_days + 1
    monkeypatch.setattr(runs, "now", lambda: real_now() + timedelta(days=days))
    tasks["purge"].call_local()
    assert not (settings.portfolio_run_dir / run_id).exists()


@pytest.mark.slow
def test_a_run_a_crashed_worker_left_running_is_failed_when_the_worker_starts(
    start_app: Callable[..., Any], tmp_path: Path
) -> None:
    with start_app() as client:
        engine = app_of(client).state.engine
        settings = app_of(client).state.settings
        run_id = upload(client, portfolio_csv(5)).json()["id"]
        # As a worker on this host that died mid-run leaves it: running, its task taken.
        assert runs.start(engine, run_id, worker=f"{socket.gethostname()}:1")
        with running_worker(
            database_url=settings.database_url, run_dir=settings.portfolio_run_dir, log_path=tmp_path / "worker.log"
        ):
            run = wait_finished(client, run_id)
        assert run["status"] == "failed" and run["error"] == runs.INTERRUPTED
        assert run["result"] is None


@pytest.mark.slow
@pytest.mark.postgres
def test_the_life_cycle_on_postgresql(
    start_app: Callable[..., Any], postgres_databases: Callable[[], str], tmp_path: Path
) -> None:
    with start_app(database_url=postgres_databases()) as client:
        settings = app_of(client).state.settings
        run_id = upload(client, portfolio_csv(50), candidate=CANDIDATE_POLICY.read_bytes()).json()["id"]
        with running_worker(
            database_url=settings.database_url, run_dir=settings.portfolio_run_dir, log_path=tmp_path / "worker.log"
        ):
            run = wait_finished(client, run_id)
        assert run["status"] == "succeeded", run
        assert run["summary"]["rows_total"] == 50 and "swap" in run["summary"]
        lines = client.get(run["result"]["csv"]).text.splitlines()
        assert len(lines) == 51


def test_the_upload_route_is_exempt_from_the_general_body_limit(client: TestClient) -> None:
    settings = app_of(client).state.settings
    content = portfolio_csv(4000)
    assert len(content) > settings.max_body_bytes  # 64 KiB elsewhere
    answer = upload(client, content)
    assert answer.status_code == 202, answer.text
    too_big = client.post("/api/v1/evaluations", content=b"{" + b" " * len(content) + b"}")
    assert too_big.status_code == 413


def test_the_api_side_of_the_queue_imports_nothing_of_the_worker_and_cannot_run_a_task() -> None:
    """No cycle: the worker owns the task's body (runs.execute_runs_with), the API only enqueues."""
    code = (
        "import sys, evaluation_api.portfolio_runs.store as runs\n"
        "assert not [m for m in sys.modules if m == 'portfolio' or m.startswith('portfolio.')], 'imported'\n"
        "try:\n    runs.run_portfolio('x')\nexcept RuntimeError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "executed by the worker" in done.stdout


def test_a_refused_candidate_policy_names_the_uploaded_file_and_never_the_servers_path(
    client: TestClient, tmp_path: Path
) -> None:
    text = CANDIDATE_POLICY.read_text(encoding="utf-8").replace("max_ratio: 0.9", "max_ratio: -1", 1)
    refused = upload(client, portfolio_csv(2), candidate=text.encode())
    assert refused.status_code == 422, refused.text
    message = refused.json()["errors"][0]["message"]
    assert message.startswith("Política candidata recusada: candidata.yaml: line ")
    assert "greater than 0" in message
    assert str(tmp_path) not in message and "portfolio-runs" not in message
