"""Backtests: a portfolio run naming a challenger (`challenger_id`), decided by the real worker with the
live policy and the challenger's policy version; its swap counts against a hand computation (each row
decided by decisioning/policy with both policies, on the committed model's segment), in the run's
summary and in the challenger's report; the 422s and 403s of naming one; another's backtest hidden from
analysts; the command line's `backtest`, over a real API process and worker."""

from __future__ import annotations

import csv
import io
import math
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import DECISIONS, FEATURES, MAX_AMOUNT, SEGMENT_KEYS
from decisioning.policy import Policy, decide, load_policy, parse_policy
from devtools.portfolio_worker import running_worker
from evaluation_api.config import POLICY_PATH
from evaluation_api.identity.roles import Role
from evaluation_api.portfolio_runs import store as runs
from evaluation_api.releases import registry
from tests.evaluation_api.conftest import app_of
from tests.evaluation_api.test_portfolio_runs import RUN_DEADLINE_S, URL, portfolio_csv
from tests.evaluation_api.test_releases import as_user
from tests.utils import servers
from tests.utils.artifacts import REAL_DATA
from tests.utils.evaluations import ModelServiceStub, TestClient, predict
from tests.utils.identity import CONTEXT, PASSWORD, cli_create_account

CANDIDATE_FILE = Path(__file__).resolve().parents[1] / "portfolio" / "candidate_policy.yaml"
OUTCOMES = (*DECISIONS, "invalid")
SAMPLE_ROWS = 400


def challenger_text(label: str) -> str:
    """tests/portfolio/candidate_policy.yaml (two rules moved toward denied) under `label`, and one segment's
    decision changed too, so that both kinds of change move customers."""
    data = yaml.safe_load(CANDIDATE_FILE.read_text(encoding="utf-8"))
    data["version"] = label
    data["segments"]["high_limit_revolvers"]["decision"] = "approved"
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def real_rows() -> bytes:
    """The header and the first SAMPLE_ROWS customers of the real cc_general.csv, as they are, and every
    customer missing one of the five figures (the API would refuse them: invalid in the run)."""
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public dataset is not committed)")
    with REAL_DATA.open(encoding="utf-8", newline="") as source:
        lines = source.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    columns = [header.index(f.csv_column) for f in FEATURES]
    missing = [
        line for line in lines[SAMPLE_ROWS + 1 :] if any(not next(csv.reader([line]))[i].strip() for i in columns)
    ]
    assert missing, "the real data has a customer without a credit limit"
    return "".join([*lines[: SAMPLE_ROWS + 1], *missing]).encode()


def figures_of(row: dict[str, str]) -> dict[str, float] | None:
    """The five figures as the API accepts them, or None for a row it would refuse."""
    figures = {}
    for feature in FEATURES:
        try:
            value = float(row[feature.csv_column])
        except ValueError:
            return None
        if not math.isfinite(value) or value < 0 or value >= MAX_AMOUNT or (feature.positive and value == 0):
            return None
        figures[feature.name] = value
    return figures


def hand_count(content: bytes, live: Policy, candidate: Policy) -> tuple[Counter[tuple[str, str, str]], int]:
    """(segment, live decision, candidate decision) -> rows, one `decide` per row and policy; and the
    invalid rows."""
    parsed = [figures_of(row) for row in csv.DictReader(io.StringIO(content.decode()))]
    valid = [f for f in parsed if f is not None]
    counts: Counter[tuple[str, str, str]] = Counter()
    for figures, answer in zip(valid, predict(valid), strict=True):
        segment = answer["segment"]
        counts[(segment, decide(live, figures, segment).decision, decide(candidate, figures, segment).decision)] += 1
    return counts, len(parsed) - len(valid)


def matrix(counts: Counter[tuple[str, str, str]], segment: str | None, keys: tuple[str, ...]) -> Any:
    return {
        a: {b: sum(n for (s, x, y), n in counts.items() if (segment in (None, s)) and (x, y) == (a, b)) for b in keys}
        for a in keys
    }


def upload(
    client: TestClient,
    headers: dict[str, str],
    content: bytes,
    *,
    challenger_id: object = None,
    name: str = "carteira.csv",
    candidate: bytes | None = None,
) -> Any:
    files: dict[str, tuple[str, bytes, str]] = {"file": (name, content, "text/csv")}
    if candidate is not None:
        files["candidate_policy"] = ("candidata.yaml", candidate, "application/yaml")
    data = {"challenger_id": str(challenger_id)} if challenger_id is not None else None
    return client.post(URL, files=files, data=data, headers=headers)


def wait_finished(client: TestClient, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{URL}/{run_id}", headers=headers).json()
        if run["status"] in runs.FINISHED:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not finished after {RUN_DEADLINE_S}s")


class People:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.analyst = as_user(client, "ana", Role.ANALYST)
        self.author = as_user(client, "rita", Role.RISK)
        self.tester = as_user(client, "rui", Role.RISK)
        self.admin = as_user(client, "adm", Role.ADMIN)
        self.auditor = as_user(client, "aldo", Role.AUDITOR)

    def challenger(self, label: str = "backtest-1") -> int:
        """A policy version registered by `rita`, started as the challenger; its id."""
        version = self.client.post(
            "/api/v1/policy-versions", json={"text": challenger_text(label)}, headers=self.author
        )
        assert version.status_code == 201, version.text
        started = self.client.post(
            "/api/v1/challengers", json={"policy_version_id": version.json()["id"]}, headers=self.author
        )
        assert started.status_code == 201, started.text
        challenger_id: int = started.json()["id"]
        return challenger_id


@pytest.fixture
def people(start_app: Callable[..., Any]) -> Iterator[People]:
    with start_app(as_role=None) as client:
        yield People(client)


def nothing_written(people: People) -> None:
    engine = app_of(people.client).state.engine
    assert runs.list_runs(engine, created_by=None, limit=10, offset=0) == []
    run_dir = app_of(people.client).state.settings.portfolio_run_dir
    assert not any(run_dir.glob("*/input.*"))


def test_naming_a_challenger_is_checked_and_nothing_is_half_written(people: People) -> None:
    client, tester = people.client, people.tester
    challenger_id = people.challenger()
    content = portfolio_csv(3)

    both = upload(client, tester, content, challenger_id=challenger_id, candidate=CANDIDATE_FILE.read_bytes())
    assert both.status_code == 422, both.text
    assert [(e["field"], e["rule"]) for e in both.json()["errors"]] == [
        ("candidate_policy", "exclusive"),
        ("challenger_id", "exclusive"),
    ]
    for value in ("abc", "0", "-1", "1.5"):
        answer = upload(client, tester, content, challenger_id=value)
        assert answer.status_code == 422, (value, answer.text)
        [error] = answer.json()["errors"]
        assert (error["field"], error["rule"]) == ("challenger_id", "integer"), value
    unknown = upload(client, tester, content, challenger_id=999)
    assert unknown.status_code == 422
    assert [(e["field"], e["rule"]) for e in unknown.json()["errors"]] == [("challenger_id", "exists")]
    assert "999" in unknown.json()["errors"][0]["message"]

    assert client.post(f"/api/v1/challengers/{challenger_id}/stop", headers=people.author).status_code == 204
    stopped = upload(client, tester, content, challenger_id=challenger_id)
    assert stopped.status_code == 422
    assert [(e["field"], e["rule"]) for e in stopped.json()["errors"]] == [("challenger_id", "active")]

    # A challenger with a model: the worker decides with its own model, so it cannot backtest one.
    engine = app_of(client).state.engine
    model = registry.register_model(
        engine,
        {"model": {"version": "c0ffee00c0ffee00", "tag": "m:c0ffee00c0ffee00"}, "card": {}},
        service_url="http://127.0.0.1:1",
        context=CONTEXT,
    )
    with_model = registry.start_challenger(engine, None, model_version_id=model.id, context=CONTEXT)
    refused = upload(client, tester, content, challenger_id=with_model.id)
    assert refused.status_code == 422
    assert [(e["field"], e["rule"]) for e in refused.json()["errors"]] == [("challenger_id", "policy_only")]
    nothing_written(people)


def test_only_the_risk_team_and_admins_name_a_challenger_and_only_with_one(people: People) -> None:
    client = people.client
    challenger_id = people.challenger()
    content = portfolio_csv(3)
    named = upload(client, people.analyst, content, challenger_id=challenger_id)
    assert named.status_code == 403 and named.json()["error"] == "forbidden", named.text
    assert "challenger_id" in named.json()["message"]
    plain = upload(client, people.tester, content)
    assert plain.status_code == 403 and plain.json()["error"] == "forbidden"
    for role in (Role.AUDITOR, Role.REVIEWER, Role.SYSTEM, Role.DPO):
        headers = as_user(client, f"x-{role.value}", role)
        assert upload(client, headers, content, challenger_id=challenger_id).status_code == 403, role
    nothing_written(people)
    assert upload(client, people.admin, content, challenger_id=challenger_id).status_code == 202
    assert upload(client, people.analyst, content).status_code == 202  # an analyst's run, as before


def test_a_backtest_is_not_shown_to_an_analyst(people: People) -> None:
    client = people.client
    challenger_id = people.challenger()
    created = upload(client, people.tester, portfolio_csv(3), challenger_id=challenger_id)
    assert created.status_code == 202, created.text
    run = created.json()
    assert run["challenger_id"] == challenger_id and run["candidate_policy"] is False
    mine = upload(client, people.analyst, portfolio_csv(3)).json()
    assert mine["challenger_id"] is None

    # Another's run, its challenger included: a 404 as for any run not theirs, absent from their list.
    assert client.get(f"{URL}/{run['id']}", headers=people.analyst).status_code == 404
    assert client.get(f"{URL}/{run['id']}/result", headers=people.analyst).status_code == 404
    assert [r["id"] for r in client.get(URL, headers=people.analyst).json()["items"]] == [mine["id"]]
    assert client.get(f"/api/v1/challengers/{challenger_id}/report", headers=people.analyst).status_code == 403
    # Another risk officer neither: runs are their creator's. The auditor reads it.
    assert client.get(f"{URL}/{run['id']}", headers=people.author).status_code == 404
    assert client.get(f"{URL}/{run['id']}", headers=people.auditor).json()["challenger_id"] == challenger_id
    events = client.get("/api/v1/audit", params={"record_id": run["id"]}, headers=people.auditor).json()["items"]
    assert [(e["action"], e["actor"], e["details"]["challenger_id"]) for e in events] == [
        ("portfolio_run.create", "rui", challenger_id)
    ]


@pytest.mark.slow
def test_a_backtest_counts_what_a_hand_computation_counts_and_joins_the_report(people: People, tmp_path: Path) -> None:
    client = people.client
    challenger_id = people.challenger()
    content = real_rows()
    live, candidate = load_policy(POLICY_PATH), parse_policy(challenger_text("backtest-1"))
    expected, invalid = hand_count(content, live, candidate)
    changed = sum(n for (_, a, b), n in expected.items() if a != b)
    assert invalid > 0 and changed > 0  # both kinds of row are in the file
    assert {b for (_, a, b), n in expected.items() if a != b} >= {"approved", "denied"}  # a segment and a rule

    settings = app_of(client).state.settings
    with running_worker(
        database_url=settings.database_url, run_dir=settings.portfolio_run_dir, log_path=tmp_path / "worker.log"
    ):
        first = upload(client, people.tester, content, challenger_id=challenger_id, name="real.csv").json()
        second = upload(client, people.tester, portfolio_csv(30), challenger_id=challenger_id).json()
        broken = upload(client, people.tester, b"BALANCE,PURCHASES,CASH_ADVANCE,CREDIT_LIMIT,PAYMENTS\n1,2\n",
                        challenger_id=challenger_id).json()  # fmt: skip
        run = wait_finished(client, people.tester, first["id"])
        assert wait_finished(client, people.tester, second["id"])["status"] == "succeeded"
        assert wait_finished(client, people.tester, broken["id"])["status"] == "failed"

    assert run["status"] == "succeeded", run
    summary = run["summary"]
    assert summary["policy_version"] == live.version and summary["policy_version_b"] == "backtest-1"
    assert summary["rows_total"] == sum(expected.values()) + invalid and summary["rows_invalid"] == invalid
    overall = matrix(expected, None, OUTCOMES)
    overall["invalid"]["invalid"] = invalid
    assert summary["swap"] == overall
    assert summary["swap_by_segment"] == {key: matrix(expected, key, OUTCOMES) for key in SEGMENT_KEYS}

    report = client.get(f"/api/v1/challengers/{challenger_id}/report", headers=people.auditor)
    assert report.status_code == 200, report.text
    body = report.json()
    # The live part as before: no evaluation was made, so every cell is 0.
    assert body["evaluations"] == 0 and body["changed"] == 0
    assert body["swap"] == {a: dict.fromkeys(DECISIONS, 0) for a in DECISIONS}
    assert set(body) == {
        "challenger_id", "policy_version_id", "policy_version", "model_version_id", "model_version", "started_at",
        "stopped_at", "evaluations", "changed", "swap", "by_segment", "segment_moves", "backtests",
    }  # fmt: skip
    # Succeeded runs only, newest first.
    assert [b["run_id"] for b in body["backtests"]] == [second["id"], first["id"]]
    backtest = body["backtests"][1]
    assert backtest == {
        "run_id": first["id"],
        "file_name": "real.csv",
        "created_at": backtest["created_at"],
        "created_by": "rui",
        "rows_total": summary["rows_total"],
        "rows_invalid": invalid,
        "changed": changed,
        "overall": matrix(expected, None, DECISIONS),
        "by_segment": {key: matrix(expected, key, DECISIONS) for key in SEGMENT_KEYS},
    }
    assert backtest["created_at"] == first["created_at"]
    assert body["backtests"][0]["rows_total"] == 30


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def api_process(tmp_path: Path, stub: ModelServiceStub, artifacts_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """The API under uvicorn on a SQLite file and a run directory in tmp_path: (its URL, the database URL,
    the run directory)."""
    database_url = f"sqlite:///{tmp_path / 'evaluations.db'}"
    run_dir = tmp_path / "portfolio-runs"
    server = servers.evaluation_api(
        model_url=stub.url,
        database_url=database_url,
        log_dir=artifacts_dir,
        AUTH_SIGNING_KEY=secrets.token_urlsafe(48),
        PORTFOLIO_RUN_DIR=str(run_dir),
    )
    with server:
        yield server.url, database_url, run_dir


def cli(api_url: str, username: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaluation_api.releases", "--api-url", api_url, "--username", username, *args],
        cwd=servers.ROOT,
        env=servers.project_env(),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S + 60,
    )


def table(lines: list[str]) -> dict[str, dict[str, int]]:
    """The swap table the command prints: a header, then one line per live decision."""
    header = lines[0].split()
    assert header[-3:] == list(DECISIONS), lines[0]
    rows = {}
    for line in lines[1:4]:
        live, *cells = line.split()
        rows[live] = dict(zip(DECISIONS, map(int, cells), strict=True))
    return rows


@pytest.mark.slow
def test_the_command_line_backtests_a_file_and_waits_for_it(api_process: tuple[str, str, Path], tmp_path: Path) -> None:
    api_url, database_url, run_dir = api_process
    for name in ("rita", "rui"):
        cli_create_account(database_url, name, "risk")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(challenger_text("backtest-cli"), encoding="utf-8")
    created = cli(api_url, "rita", "create", str(candidate))
    assert created.returncode == 0, created.stderr
    started = cli(api_url, "rita", "challenger", "start", "2")
    assert started.returncode == 0, started.stderr
    portfolio = tmp_path / "carteira.csv"
    portfolio.write_bytes(portfolio_csv(200, seed=11))

    # No worker yet: the run stays queued, and the command gives up at its timeout, naming the run.
    waited = cli(api_url, "rui", "backtest", "1", str(portfolio), "--timeout", "1", "--poll", "0.2")
    assert waited.returncode == 1
    assert "is still queued" in waited.stderr and "/api/v1/portfolio-runs/" in waited.stderr, waited.stderr
    unknown = cli(api_url, "rui", "backtest", "7", str(portfolio))
    assert unknown.returncode == 1 and "challenger_id" in unknown.stderr, unknown.stderr

    expected, invalid = hand_count(portfolio.read_bytes(), load_policy(POLICY_PATH), parse_policy(challenger_text("x")))
    assert invalid == 0
    with running_worker(database_url=database_url, run_dir=run_dir, log_path=tmp_path / "worker.log"):
        done = cli(api_url, "rui", "backtest", "1", str(portfolio), "--by-segment", "--poll", "0.2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    changed = sum(n for (_, a, b), n in expected.items() if a != b)
    assert lines[0].startswith("backtest of challenger 1 (policy backtest-cli against live ")
    assert "over carteira.csv, run " in lines[0] and f"200 rows, 0 invalid, {changed} decided otherwise" in lines[0]
    assert table(lines[1:5]) == matrix(expected, None, DECISIONS)
    for key in SEGMENT_KEYS:
        at = lines.index(key)
        assert table(lines[at + 1 : at + 5]) == matrix(expected, key, DECISIONS), key

    # Both runs are backtests of challenger 1: the one the first command gave up on ran once the worker
    # started (it was queued first), so the report lists it after the newer one.
    timed_out = waited.stderr.split("run ", 1)[1].split(" ", 1)[0]
    newest = lines[0].split(", run ", 1)[1].split(":", 1)[0]
    report = cli(api_url, "rita", "report", "1")
    assert report.returncode == 0, report.stderr
    listed = [line.split()[1] for line in report.stdout.splitlines() if line.startswith("backtest ")]
    assert listed == [newest, timed_out], report.stdout
