"""Change control (evaluation_api/releases/): policy versions, a challenger in shadow, its report against a
hand-computed swap set, four eyes, promotion and rollback, in process on a SQLite file.

Several processes seeing one promotion at the same instant is tests/evaluation_api/test_release_processes.py.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from contract import DECISIONS, SEGMENT_KEYS
from decisioning.policy import decide
from evaluation_api.audit.trail import AuditEventRow
from evaluation_api.config import POLICY_PATH
from evaluation_api.identity.roles import Role
from evaluation_api.records.table import EvaluationRow
from evaluation_api.releases.table import ShadowDecisionRow
from tests.utils.evaluations import SEGMENT_CUSTOMERS, TestClient
from tests.utils.identity import bearer, create_account, token

SEED_TEXT = POLICY_PATH.read_text(encoding="utf-8")
FAST = {"release_poll_s": 0.05, "release_switch_delay_s": 0.2}


def candidate_text(label: str = "candidate-1", **segment_decisions: str) -> str:
    """The packaged policy under another label, with some segments' decisions changed."""
    data = yaml.safe_load(SEED_TEXT)
    data["version"] = label
    for key, decision in segment_decisions.items():
        data["segments"][key]["decision"] = decision
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def as_user(client: TestClient, username: str, role: Role) -> dict[str, str]:
    with contextlib.suppress(Exception):
        create_account(client, username, role)
    return bearer(token(client, username, role))


def body_of(customer: dict[str, float], name: str = "Cliente Teste") -> dict[str, Any]:
    return {"name": name, **customer}


def evaluate(client: TestClient, customer: dict[str, float], headers: dict[str, str]) -> dict[str, Any]:
    response = client.post("/api/v1/evaluations", json=body_of(customer), headers=headers)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def risk_app(start_app: Callable[..., Any]) -> Any:
    """The app (fast release polls), with an analyst, two risk officers and an auditor."""

    class People:
        pass

    with start_app(as_role=None, **FAST) as client:
        people = People()
        people.client = client  # type: ignore[attr-defined]
        people.analyst = as_user(client, "ana", Role.ANALYST)  # type: ignore[attr-defined]
        people.author = as_user(client, "rita", Role.RISK)  # type: ignore[attr-defined]
        people.approver = as_user(client, "rui", Role.RISK)  # type: ignore[attr-defined]
        people.auditor = as_user(client, "aldo", Role.AUDITOR)  # type: ignore[attr-defined]
        yield people


def test_the_packaged_policy_is_version_1_live_on_first_start(risk_app: Any) -> None:
    client = risk_app.client
    versions = client.get("/api/v1/policy-versions", headers=risk_app.auditor).json()
    assert [(v["id"], v["status"], v["author"]) for v in versions] == [(1, "live", "system:seed")]
    full = client.get("/api/v1/policy-versions/1", headers=risk_app.author).json()
    assert full["text"] == SEED_TEXT
    releases = client.get("/api/v1/releases", headers=risk_app.author).json()
    assert [(r["action"], r["policy_version_id"]) for r in releases] == [("seed", 1)]


def test_a_policy_that_does_not_validate_is_refused_with_its_line_and_nothing_is_registered(risk_app: Any) -> None:
    client = risk_app.client
    broken = candidate_text().replace("  least_active:", "  least_activ:")
    response = client.post("/api/v1/policy-versions", json={"text": broken}, headers=risk_app.author)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "text" and error["rule"] == "policy"
    assert error["location"] == "segments" and "least_activ" in error["message"]
    assert error["line"] == broken.splitlines().index("  least_activ:") + 1
    data = yaml.safe_load(candidate_text())
    del data["segments"]["least_active"]["message"]  # a segment without its pt-BR message
    no_message = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    response = client.post("/api/v1/policy-versions", json={"text": no_message}, headers=risk_app.author)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["location"] == "segments.least_active.message"
    assert error["line"] == no_message.splitlines().index("  least_active:") + 1
    assert len(client.get("/api/v1/policy-versions", headers=risk_app.author).json()) == 1


def test_the_same_file_or_label_twice_is_a_conflict(risk_app: Any) -> None:
    client = risk_app.client
    assert client.post("/api/v1/policy-versions", json={"text": SEED_TEXT}, headers=risk_app.author).json()[
        "error"
    ] == ("duplicate")
    first = client.post("/api/v1/policy-versions", json={"text": candidate_text("x")}, headers=risk_app.author)
    assert first.status_code == 201
    again = client.post(
        "/api/v1/policy-versions", json={"text": candidate_text("x", least_active="review")}, headers=risk_app.author
    )
    assert again.status_code == 409 and again.json()["error"] == "duplicate_label"


def test_only_the_risk_team_and_admins_change_and_analysts_see_nothing(risk_app: Any) -> None:
    client = risk_app.client
    text = {"text": candidate_text()}
    assert client.post("/api/v1/policy-versions", json=text, headers=risk_app.analyst).status_code == 403
    assert client.post("/api/v1/policy-versions", json=text, headers=risk_app.auditor).status_code == 403
    assert client.get("/api/v1/releases", headers=risk_app.analyst).status_code == 403
    assert client.post("/api/v1/policy-versions", json=text).status_code == 401


def test_shadow_decisions_are_stored_never_returned_and_the_report_counts_them(risk_app: Any) -> None:
    client = risk_app.client
    changed = {"least_active": "review", "high_limit_revolvers": "approved"}
    version = client.post(
        "/api/v1/policy-versions", json={"text": candidate_text(**changed)}, headers=risk_app.author
    ).json()
    assert version["status"] == "draft"
    challenger = client.post(
        "/api/v1/challengers", json={"policy_version_id": version["id"]}, headers=risk_app.author
    ).json()
    assert client.get("/api/v1/policy-versions", headers=risk_app.author).json()[0]["status"] == "candidate"
    time.sleep(0.2)  # every process (here one) reads the challenger within RELEASE_POLL_S

    customers = [c for _, c in sorted(SEGMENT_CUSTOMERS.items())] * 3
    answers = [evaluate(client, c, risk_app.analyst) for c in customers]
    live_policy = client.app.state.policies.policy()
    challenger_policy = client.app.state.policies.challenger.policy
    expected: Counter[tuple[str, str, str]] = Counter()
    for customer, answer in zip(customers, answers, strict=True):
        figures = {k: customer[k] for k in ("balance", "purchases", "cash_advance", "credit_limit", "payments")}
        key = answer["segment"]["key"]
        assert answer["decision"] == decide(live_policy, figures, key).decision  # the live policy answered
        assert answer["policy_version"] == live_policy.version
        assert "shadow" not in answer and "challenger" not in str(answer)
        expected[(key, answer["decision"], decide(challenger_policy, figures, key).decision)] += 1

    engine = client.app.state.engine

    def stored() -> int:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(ShadowDecisionRow)).scalar_one())

    wait_for(lambda: stored() == len(customers))
    # The record read back shows nothing of the shadow either.
    record = client.get(f"/api/v1/evaluations/{answers[0]['id']}", headers=risk_app.analyst).json()
    assert "shadow" not in str(record).lower()

    report = client.get(f"/api/v1/challengers/{challenger['id']}/report", headers=risk_app.auditor).json()
    assert report["evaluations"] == len(customers)
    assert report["changed"] == sum(n for (_, live, new), n in expected.items() if live != new)
    for live in DECISIONS:
        for new in DECISIONS:
            assert report["swap"][live][new] == sum(n for (_, a, b), n in expected.items() if (a, b) == (live, new))
    for key in SEGMENT_KEYS:
        for live in DECISIONS:
            for new in DECISIONS:
                assert report["by_segment"][key][live][new] == expected[(key, live, new)]
    assert report["changed"] > 0  # the candidate does change someone's decision


def test_four_eyes_then_promotion_switches_without_restart_and_rollback_returns(risk_app: Any) -> None:
    client = risk_app.client
    version = client.post(
        "/api/v1/policy-versions", json={"text": candidate_text("v2", least_active="review")}, headers=risk_app.author
    ).json()
    challenger = client.post(
        "/api/v1/challengers", json={"policy_version_id": version["id"]}, headers=risk_app.author
    ).json()
    promote = f"/api/v1/challengers/{challenger['id']}/promote"
    justification = {"justification": "Backtest e sombra mostram o efeito esperado."}

    own = client.post(promote, json=justification, headers=risk_app.author)
    assert own.status_code == 403 and own.json()["error"] == "four_eyes"
    short = client.post(promote, json={"justification": "curta"}, headers=risk_app.approver)
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "justification"

    customer = SEGMENT_CUSTOMERS["least_active"]
    before = evaluate(client, customer, risk_app.analyst)
    assert before["policy_version"] == yaml.safe_load(SEED_TEXT)["version"]

    release = client.post(promote, json=justification, headers=risk_app.approver)
    assert release.status_code == 200, release.text
    assert release.json()["policy_version"] == "v2" and release.json()["action"] == "promote"
    wait_for(lambda: evaluate(client, customer, risk_app.analyst)["policy_version"] == "v2")
    after = evaluate(client, customer, risk_app.analyst)
    assert before["decision"] == "denied" and after["decision"] == "review"
    with client.app.state.engine.connect() as connection:
        recorded = connection.execute(select(EvaluationRow.policy_version).where(EvaluationRow.id == after["id"]))
        assert recorded.scalar_one() == "v2"  # the record names the version that decided

    statuses = {v["id"]: v["status"] for v in client.get("/api/v1/policy-versions", headers=risk_app.author).json()}
    assert statuses == {1: "retired", version["id"]: "live"}
    # A retired version, or the same challenger again, cannot be promoted.
    again = client.post(promote, json=justification, headers=risk_app.approver)
    assert again.status_code == 409

    back = client.post("/api/v1/releases/rollback", json=justification, headers=risk_app.author)
    assert back.status_code == 200 and back.json()["policy_version_id"] == 1
    wait_for(lambda: evaluate(client, customer, risk_app.analyst)["policy_version"] == before["policy_version"])
    statuses = {v["id"]: v["status"] for v in client.get("/api/v1/policy-versions", headers=risk_app.author).json()}
    assert statuses == {1: "live", version["id"]: "retired"}
    nothing = client.post("/api/v1/releases/rollback", json=justification, headers=risk_app.author)
    assert nothing.status_code == 409 and nothing.json()["error"] == "nothing_to_roll_back"

    with client.app.state.engine.connect() as connection:
        actions = [
            row.action
            for row in connection.execute(
                select(AuditEventRow.action)
                .where(
                    AuditEventRow.action.in_(
                        ["policy_version.create", "challenger.start", "release.promote", "release.rollback"]
                    )
                )
                .order_by(AuditEventRow.id)
            )
        ]
    assert actions == ["policy_version.create", "challenger.start", "release.promote", "release.rollback"]


def test_a_challenger_that_fails_never_fails_the_live_answer(risk_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = risk_app.client
    version = client.post("/api/v1/policy-versions", json={"text": candidate_text()}, headers=risk_app.author).json()
    client.post("/api/v1/challengers", json={"policy_version_id": version["id"]}, headers=risk_app.author)
    time.sleep(0.2)
    shadow = client.app.state.evaluator.shadow

    def broken(*_: Any) -> None:
        raise RuntimeError("the challenger's store is broken")

    monkeypatch.setattr(shadow, "_store", broken)
    answers = [evaluate(client, SEGMENT_CUSTOMERS["high_limit_revolvers"], risk_app.analyst) for _ in range(5)]
    assert all(a["decision"] for a in answers)
    wait_for(lambda: shadow.outcomes.labels("failed")._value.get() >= 5)


def test_starting_two_challengers_or_a_live_one_is_a_conflict(risk_app: Any) -> None:
    client = risk_app.client
    live = client.post("/api/v1/challengers", json={"policy_version_id": 1}, headers=risk_app.author)
    assert live.status_code == 409 and live.json()["error"] == "not_candidate"
    missing = client.post("/api/v1/challengers", json={"policy_version_id": 99}, headers=risk_app.author)
    assert missing.status_code == 404
    a = client.post("/api/v1/policy-versions", json={"text": candidate_text("a")}, headers=risk_app.author).json()
    b = client.post("/api/v1/policy-versions", json={"text": candidate_text("b")}, headers=risk_app.author).json()
    first = client.post("/api/v1/challengers", json={"policy_version_id": a["id"]}, headers=risk_app.author).json()
    second = client.post("/api/v1/challengers", json={"policy_version_id": b["id"]}, headers=risk_app.author)
    assert second.status_code == 409 and second.json()["error"] == "challenger_active"
    assert client.post(f"/api/v1/challengers/{first['id']}/stop", headers=risk_app.author).status_code == 204
    assert client.post(f"/api/v1/challengers/{first['id']}/stop", headers=risk_app.author).status_code == 409
    assert (
        client.post("/api/v1/challengers", json={"policy_version_id": b["id"]}, headers=risk_app.author).status_code
        == 201
    )


def test_each_release_names_the_one_a_rollback_returns_to(risk_app: Any) -> None:
    # The Mudanças page asks before a rollback which version will decide again: the release's previous_id.
    client = risk_app.client
    text = candidate_text("v-prev", least_active="review")
    version = client.post("/api/v1/policy-versions", json={"text": text}, headers=risk_app.author).json()
    challenger = client.post(
        "/api/v1/challengers", json={"policy_version_id": version["id"]}, headers=risk_app.author
    ).json()
    justification = {"justification": "Sombra revisada pela equipe de risco."}
    [seed] = client.get("/api/v1/releases", headers=risk_app.auditor).json()
    assert seed["previous_id"] is None
    promoted = client.post(
        f"/api/v1/challengers/{challenger['id']}/promote", json=justification, headers=risk_app.approver
    ).json()
    assert promoted["previous_id"] == seed["id"]
    back = client.post("/api/v1/releases/rollback", json=justification, headers=risk_app.author).json()
    assert back["previous_id"] is None and back["policy_version_id"] == seed["policy_version_id"]
    listed = client.get("/api/v1/releases", headers=risk_app.auditor).json()
    assert [(r["id"], r["previous_id"]) for r in listed] == [
        (back["id"], None),
        (promoted["id"], seed["id"]),
        (seed["id"], None),
    ]


def test_the_shadow_scorer_stores_what_a_linger_gathers_in_one_transaction_and_stores_it_on_close() -> None:
    from prometheus_client import CollectorRegistry

    from decisioning.policy import load_policy
    from evaluation_api.releases.live import ShadowItem, ShadowScorer

    policy = load_policy(POLICY_PATH)
    batches: list[int] = []
    scorer = ShadowScorer(
        None,  # type: ignore[arg-type]  # never reached: the store is replaced
        queue_max=100,
        registry_metrics=CollectorRegistry(),
        store=lambda _engine, rows: batches.append(len(rows)),
        linger_s=0.3,
    )
    customer = SEGMENT_CUSTOMERS["high_limit_revolvers"]
    live = decide(policy, customer, "high_limit_revolvers").decision
    for i in range(40):
        scorer.submit(ShadowItem(f"e{i}", 1, policy, customer, "high_limit_revolvers", live))
    wait_for(lambda: sum(batches) == 40)
    assert batches == [40]  # gathered, not one transaction per evaluation
    for i in range(7):
        scorer.submit(ShadowItem(f"f{i}", 1, policy, customer, "high_limit_revolvers", live))
    scorer.close()  # within the linger: what waits is stored before the thread stops
    assert batches == [40, 7]
    assert scorer.outcomes.labels("stored")._value.get() == 47
