"""Change control for models (evaluation_api/releases/): a model version registered from the service that
serves it, a challenger model scored in shadow by its own service, the segment moves against a
hand-computed set, a challenger model that fails or stalls while the live answers go on, and a promotion
that routes every evaluation to the promoted version's service (and a rollback that routes them back).

The two model services are stubs on real sockets (tests/utils/evaluations.py): the live one answers with
the committed pipeline, the candidate with the same pipeline's centroids rotated by one, so that every
customer moves to segment (nearest + 1) mod 5 and its decision follows from the policy, by hand.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from contract import SEGMENTS, SEGMENTS_BY_KEY
from decisioning.policy import decide
from evaluation_api.audit.trail import AuditEventRow
from evaluation_api.identity.roles import Role
from evaluation_api.releases.table import ShadowDecisionRow
from tests.evaluation_api.test_releases import FAST, as_user, evaluate, wait_for
from tests.utils.evaluations import MODEL_VERSION, SEGMENT_CUSTOMERS, ModelServiceStub, TestClient

CANDIDATE = "c0ffee00c0ffee00"
FIGURES = ("balance", "purchases", "cash_advance", "credit_limit", "payments")
CUSTOMERS = [c for _, c in sorted(SEGMENT_CUSTOMERS.items())] * 2


class People:
    client: TestClient
    analyst: dict[str, str]
    author: dict[str, str]
    approver: dict[str, str]
    auditor: dict[str, str]


@pytest.fixture
def candidate() -> Iterator[ModelServiceStub]:
    with ModelServiceStub(version=CANDIDATE, shift=1) as service:
        yield service


@pytest.fixture
def people(start_app: Callable[..., Any], candidate: ModelServiceStub) -> Iterator[People]:
    with start_app(as_role=None, candidate_model_service_urls=[candidate.url], **FAST) as client:
        p = People()
        p.client = client
        p.analyst = as_user(client, "ana", Role.ANALYST)
        p.author = as_user(client, "rita", Role.RISK)
        p.approver = as_user(client, "rui", Role.RISK)
        p.auditor = as_user(client, "aldo", Role.AUDITOR)
        yield p


def register(people: People, version: str = CANDIDATE) -> dict[str, Any]:
    response = people.client.post("/api/v1/model-versions", json={"version": version}, headers=people.author)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def start(people: People, **body: int) -> dict[str, Any]:
    response = people.client.post("/api/v1/challengers", json=body, headers=people.author)
    assert response.status_code == 201, response.text
    time.sleep(0.2)  # every process (here one) reads the challenger within RELEASE_POLL_S
    answer: dict[str, Any] = response.json()
    return answer


def stored(people: People) -> int:
    with people.client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(select(func.count()).select_from(ShadowDecisionRow)).scalar_one())


def moved(segment_key: str) -> str:
    """The candidate stub's segment for a customer the live model puts in `segment_key`."""
    return SEGMENTS[(SEGMENTS_BY_KEY[segment_key].id + 1) % len(SEGMENTS)].key


def test_a_model_version_is_registered_from_the_service_that_serves_it(
    people: People, candidate: ModelServiceStub, stub: ModelServiceStub
) -> None:
    client = people.client
    version = register(people)
    assert version["status"] == "draft"
    assert version["service_url"] == candidate.url
    assert version["tag"] == f"credit_card_segmentation:{CANDIDATE}"
    assert version["card"]["segments"] and "silhouette" in str(version["card"])
    # The live model's service is known too: its version can be registered (and found where it is served).
    live = register(people, MODEL_VERSION)
    assert live["service_url"] == stub.url

    again = client.post("/api/v1/model-versions", json={"version": CANDIDATE}, headers=people.author)
    assert again.status_code == 409 and again.json()["error"] == "duplicate"
    unknown = client.post("/api/v1/model-versions", json={"version": "0123456789abcdef"}, headers=people.author)
    assert unknown.status_code == 422
    problem = unknown.json()["errors"][0]
    assert (problem["field"], problem["rule"]) == ("version", "served")
    assert CANDIDATE in problem["message"] and candidate.url in problem["message"]  # what is served, where
    malformed = client.post("/api/v1/model-versions", json={"version": "../../etc"}, headers=people.author)
    assert malformed.status_code == 422 and "version" in str(malformed.json()["errors"][0]["field"])

    # Roles: an analyst may neither register nor read; an auditor reads; nothing else was registered.
    assert client.post("/api/v1/model-versions", json={"version": CANDIDATE}, headers=people.analyst).status_code == 403
    assert client.get("/api/v1/model-versions", headers=people.analyst).status_code == 403
    listed = client.get("/api/v1/model-versions", headers=people.auditor).json()
    assert [v["version"] for v in listed] == [MODEL_VERSION, CANDIDATE]
    assert client.get(f"/api/v1/model-versions/{version['id']}", headers=people.auditor).json()["id"] == version["id"]
    assert client.get("/api/v1/model-versions/999", headers=people.auditor).status_code == 404
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = connection.execute(select(AuditEventRow.action)).scalars().all()
    assert actions.count("model_version.create") == 2


def test_a_challenger_model_decides_in_shadow_through_its_own_service(
    people: People, candidate: ModelServiceStub, stub: ModelServiceStub
) -> None:
    client = people.client
    challenger = start(people, model_version_id=register(people)["id"])
    assert (challenger["model_version"], challenger["policy_version"]) == (CANDIDATE, None)

    answers = [evaluate(client, c, people.analyst) for c in CUSTOMERS]
    live_policy = client.app.state.policies.policy()  # type: ignore[attr-defined]
    expected_swap: Counter[tuple[str, str]] = Counter()
    expected_moves: Counter[tuple[str, str]] = Counter()
    for customer, answer in zip(CUSTOMERS, answers, strict=True):
        key = answer["segment"]["key"]
        assert answer["model"]["version"] == MODEL_VERSION  # the live model answered
        assert CANDIDATE not in str(answer)
        figures = {k: customer[k] for k in FIGURES}
        expected_swap[(answer["decision"], decide(live_policy, figures, moved(key)).decision)] += 1
        expected_moves[(key, moved(key))] += 1
    wait_for(lambda: stored(people) == len(CUSTOMERS))
    # The live service segmented every customer; the candidate's only saw the shadow's batched calls.
    assert sum(len(c) for c in stub.customers) == len(CUSTOMERS)
    assert sum(len(c) for c in candidate.customers) == len(CUSTOMERS)
    assert all(call.url.path == "/predict_batch" for call in candidate.calls)

    report = client.get(f"/api/v1/challengers/{challenger['id']}/report", headers=people.auditor).json()
    assert report["model_version"] == CANDIDATE and report["evaluations"] == len(CUSTOMERS)
    swap = {(a, b): n for a, row in report["swap"].items() for b, n in row.items() if n}
    assert swap == dict(expected_swap)
    moves = {(a, b): n for a, row in report["segment_moves"].items() for b, n in row.items() if n}
    assert moves == dict(expected_moves)
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(select(ShadowDecisionRow)).all()
    assert {r.model_version for r in rows} == {CANDIDATE}
    assert all(r.challenger_segment_key == moved(r.segment_key) for r in rows)


@pytest.mark.parametrize("behaviour", [503, "hang"])
def test_a_challenger_model_that_fails_or_stalls_never_fails_the_live_answer(
    people: People, candidate: ModelServiceStub, behaviour: str | int
) -> None:
    client = people.client
    start(people, model_version_id=register(people)["id"])
    candidate.default = behaviour
    metrics = client.app.state.evaluator.shadow.outcomes  # type: ignore[attr-defined]
    answers = [evaluate(client, c, people.analyst) for c in CUSTOMERS]
    assert all(a["model"]["version"] == MODEL_VERSION for a in answers)
    wait_for(lambda: metrics.labels("failed")._value.get() == len(CUSTOMERS), timeout_s=30)
    assert stored(people) == 0  # nothing stored for what the challenger did not decide
    assert metrics.labels("stored")._value.get() == 0


def test_promoting_a_model_routes_every_evaluation_to_its_service_and_rollback_routes_back(
    people: People, candidate: ModelServiceStub, stub: ModelServiceStub
) -> None:
    client = people.client
    version = register(people)
    challenger = start(people, model_version_id=version["id"])
    justification = {"justification": "Segmentação nova validada no relatório de mudanças"}
    own = client.post(f"/api/v1/challengers/{challenger['id']}/promote", json=justification, headers=people.author)
    assert own.status_code == 403 and own.json()["error"] == "four_eyes"

    release = client.post(
        f"/api/v1/challengers/{challenger['id']}/promote", json=justification, headers=people.approver
    ).json()
    assert (release["model_version"], release["model_version_id"]) == (CANDIDATE, version["id"])
    live_policy = client.app.state.policies.policy()  # type: ignore[attr-defined]
    assert release["policy_version"] == live_policy.version  # the policy half is unchanged
    wait_for(lambda: client.app.state.policies.pair().model is not None)  # type: ignore[attr-defined]

    before = len(stub.calls)
    customer = SEGMENT_CUSTOMERS["credit_purchasers_good_payers"]
    answer = evaluate(client, customer, people.analyst)
    assert answer["model"]["version"] == CANDIDATE
    assert answer["segment"]["key"] == moved("credit_purchasers_good_payers")
    assert len(stub.calls) == before  # the old service was not asked
    # Explained with the promoted model's own parameters, which it reported when it was registered.
    assert answer["explanation"] is not None
    record = client.get(f"/api/v1/evaluations/{answer['id']}", headers=people.analyst).json()
    assert record["model"]["version"] == CANDIDATE
    assert client.get("/readyz").status_code == 200  # readiness asks the live version's service
    statuses = {v["version"]: v["status"] for v in client.get("/api/v1/model-versions", headers=people.auditor).json()}
    assert statuses == {CANDIDATE: "live"}

    back = client.post("/api/v1/releases/rollback", json=justification, headers=people.approver)
    assert back.status_code == 200 and back.json()["model_version"] is None
    wait_for(lambda: client.app.state.policies.pair().model is None)  # type: ignore[attr-defined]
    assert evaluate(client, customer, people.analyst)["model"]["version"] == MODEL_VERSION
    statuses = {v["version"]: v["status"] for v in client.get("/api/v1/model-versions", headers=people.auditor).json()}
    assert statuses == {CANDIDATE: "retired"}


def test_the_live_version_served_by_another_model_is_refused_not_decided(
    people: People, candidate: ModelServiceStub
) -> None:
    client = people.client
    challenger = start(people, model_version_id=register(people)["id"])
    client.post(
        f"/api/v1/challengers/{challenger['id']}/promote",
        json={"justification": "Segmentação nova validada no relatório de mudanças"},
        headers=people.approver,
    )
    wait_for(lambda: client.app.state.policies.pair().model is not None)  # type: ignore[attr-defined]
    candidate.version = "feedfacefeedface"  # someone redeployed another model under the promoted version's address
    response = client.post("/api/v1/evaluations", json={"name": "Cliente", **CUSTOMERS[0]}, headers=people.analyst)
    assert response.status_code == 503 and "versão liberada" in response.json()["message"]


def test_a_challenger_names_a_policy_a_model_or_both(people: People) -> None:
    client = people.client
    neither = client.post("/api/v1/challengers", json={}, headers=people.author)
    assert neither.status_code == 422
    assert (neither.json()["errors"][0]["field"], neither.json()["errors"][0]["rule"]) == (
        "policy_version_id",
        "one_of",
    )
    missing = client.post("/api/v1/challengers", json={"model_version_id": 99}, headers=people.author)
    assert missing.status_code == 404
