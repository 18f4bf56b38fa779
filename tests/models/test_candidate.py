"""The retraining gate: `make model` makes a candidate beside the live model, never in its place.

A candidate is trained, in a subprocess on an isolated BentoML home (tests/utils/store.py), from a
perturbed copy of the real data made here in a temporary directory; the committed model is the live
one. The comparison's figures are checked against computations made here from the two pipelines and
the drift module's own PSI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sqlalchemy import create_engine, insert

from contract import SEGMENTS
from decisioning.policy import decide, load_policy
from evaluation_api.config import POLICY_PATH
from evaluation_api.migrate import upgrade
from evaluation_api.observability.drift import bin_shares, psi
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from models import CANDIDATES_DIR, CARD_PATH, CSV_COLUMNS, FEATURES, MODEL_NAME, MODELS_DIR, PICKLE_PATH
from models.train import load_training_data, sha256_of
from tests.utils import artifacts, servers
from tests.utils.artifacts import REAL_DATA
from tests.utils.identity import bearer, cli_create_account, cli_create_key, token_for
from tests.utils.servers import ROOT, project_env
from tests.utils.store import IsolatedStore

COMMITTED_VERSION = sha256_of(PICKLE_PATH)[:16]


def _perturbed_copy(path: Path, *, seed: int) -> Path:
    """The real customers with every amount jittered (a log-normal factor, sd 0.15) and purchases up 40%:
    the same population some months on, which moves some customers across a segment's border."""
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public cc_general dataset is not committed)")
    frame = pd.read_csv(REAL_DATA)
    rng = np.random.default_rng(seed)
    for column in CSV_COLUMNS.values():
        frame[column] = (frame[column] * np.exp(rng.normal(0.0, 0.15, len(frame)))).round(2)
    frame["PURCHASES"] = (frame["PURCHASES"] * 1.4).round(2)
    frame.to_csv(path, index=False)
    return path


def _models_dir_state() -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(MODELS_DIR.iterdir()) if p.is_file()}


def _make_model(store: IsolatedStore, *args: str) -> subprocess.CompletedProcess[str]:
    """`make model`'s command (python -m models.train --data ...) on the isolated store."""
    return store.run([sys.executable, "-m", "models.train", *args], check=False, timeout=300)


def _records_db(path: Path, keys: Path, rows: list[dict[str, Any]]) -> str:
    """A records database at head (the API's migrations) holding `rows`."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    try:
        upgrade(engine, data_keys=DataKeys.from_file(keys, create=True))
        with engine.begin() as connection:
            connection.execute(insert(EvaluationRow), rows)
    finally:
        engine.dispose()
    return url


def _evaluations(figures: np.ndarray, pipeline: Pipeline, *, newest: datetime) -> list[dict[str, Any]]:
    """One decision record per row of figures, as the API makes them (the model's segment, the policy's
    decision), one second apart, the last row the newest."""
    policy = load_policy(POLICY_PATH)
    segments = pipeline.predict(figures)
    distances = pipeline.transform(figures)
    rows = []
    for i, (row, segment) in enumerate(zip(figures, segments, strict=True)):
        named = {name: float(v) for name, v in zip(FEATURES, row, strict=True)}
        key = SEGMENTS[int(segment)].key
        outcome = decide(policy, named, key)
        at = newest - timedelta(seconds=len(figures) - 1 - i)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "request_id": f"gate-{i}",
                "channel": "api",
                "customer_name": None,
                **named,
                "segment_id": int(segment),
                "segment_key": key,
                "distances": [round(float(d), 6) for d in distances[i]],
                "decision": outcome.decision,
                "reasons": [r.model_dump() for r in outcome.reasons],
                "model_name": MODEL_NAME,
                "model_version": COMMITTED_VERSION,
                "policy_version": policy.version,
                "evaluated_at": at,
                "created_at": at,
            }
        )
    return rows


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`make model` run once on a perturbed copy of the real data, with a records database."""
    tmp = tmp_path_factory.mktemp("candidate")
    data = _perturbed_copy(tmp / "cc_general_perturbed.csv", seed=11)
    committed = artifacts.committed_pipeline()
    # The live window: 1,200 real customers evaluated last, after 300 older evaluations of customers
    # with amounts ten times larger, which a window of 1,200 must leave out.
    real = load_training_data(REAL_DATA).features.to_numpy(dtype="float64")
    rng = np.random.default_rng(5)
    window = real[rng.choice(len(real), 1200, replace=False)]
    older = real[rng.choice(len(real), 300, replace=False)] * 10
    now = datetime.now(UTC)
    rows = _evaluations(older, committed, newest=now - timedelta(days=1)) + _evaluations(window, committed, newest=now)
    database = _records_db(tmp / "evaluations.db", tmp / "data-keys.json", rows)

    store = IsolatedStore(home=tmp / "bentoml_home")
    before = _models_dir_state()
    result = _make_model(
        store,
        "--data",
        str(data),
        "--candidates-dir",
        str(tmp / "candidates"),
        "--records-db",
        database,
        "--window",
        "1200",
    )
    assert result.returncode == 0, result.stderr
    [directory] = [p for p in (tmp / "candidates").iterdir()]
    return {
        "data": data,
        "store": store,
        "result": result,
        "models_before": before,
        "directory": directory,
        "candidates": tmp / "candidates",
        "window": window,
        "comparison": json.loads((directory / "comparison.json").read_text(encoding="utf-8")),
    }


def _candidate_pipeline(directory: Path) -> Pipeline:
    card = json.loads((directory / CARD_PATH.name).read_text(encoding="utf-8"))
    assert sha256_of(directory / PICKLE_PATH.name) == card["pickle_sha256"]
    pipeline: Pipeline = joblib.load(directory / PICKLE_PATH.name)
    return pipeline


# --- where the candidate goes --------------------------------------------------------------------


def test_the_default_destination_is_var_candidates_never_models() -> None:
    assert CANDIDATES_DIR == ROOT / "var" / "candidates"
    result = subprocess.run(
        [sys.executable, "-m", "models.train", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "default: var/candidates/" in result.stdout


def test_a_candidate_leaves_models_untouched_and_lands_in_the_store_under_its_version(made: dict[str, Any]) -> None:
    directory: Path = made["directory"]
    card = json.loads((directory / CARD_PATH.name).read_text(encoding="utf-8"))
    version = card["pickle_sha256"][:16]
    tag = f"{MODEL_NAME}:{version}"

    assert _models_dir_state() == made["models_before"]
    assert version != COMMITTED_VERSION
    assert directory.name == version
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [PICKLE_PATH.name, CARD_PATH.name, "comparison.json", "comparison.md"]
    )
    assert [p.name for p in made["candidates"].iterdir()] == [version], "a staging directory was left behind"
    # In the store under its own version, its own pickle and card; the live model is not what it imported.
    store: IsolatedStore = made["store"]
    assert store.tags() == [tag]
    stored = store.home / "models" / MODEL_NAME / version
    assert (stored / PICKLE_PATH.name).read_bytes() == (directory / PICKLE_PATH.name).read_bytes()
    assert (stored / CARD_PATH.name).read_bytes() == (directory / CARD_PATH.name).read_bytes()
    assert card["training_data"]["sha256"] == sha256_of(made["data"])
    # It says what to do next.
    stderr = made["result"].stderr
    assert f"make serve-candidate VERSION={version}" in stderr
    assert f'POST /api/v1/model-versions {{"version": "{version}"}}' in stderr
    assert f"the live service keeps serving {COMMITTED_VERSION}" in stderr


def test_the_comparison_names_both_models_and_the_report_says_the_same(made: dict[str, Any]) -> None:
    comparison = made["comparison"]
    version = made["directory"].name
    assert comparison["live"]["version"] == COMMITTED_VERSION
    assert comparison["candidate"]["version"] == version
    assert comparison["same_version"] is False
    assert comparison["records_database"] is True
    verdicts = [check["verdict"] for check in comparison["checks"].values()]
    order = ["pass", "warn", "fail"]
    assert comparison["verdict"] == max(verdicts, key=order.index)
    report = (made["directory"] / "comparison.md").read_text(encoding="utf-8")
    assert report.startswith(f"# Candidate {version} against live {COMMITTED_VERSION}\n")
    assert f"**Overall verdict: {comparison['verdict']}**" in report
    stability = comparison["checks"]["stability"]
    assert f"{stability['changed']:,} of {stability['customers']:,} customers" in report


# --- the checks, against hand computations -------------------------------------------------------------


def test_stability_and_the_confusion_matrix_equal_a_count_over_both_pipelines(made: dict[str, Any]) -> None:
    X = load_training_data(made["data"]).features.to_numpy(dtype="float64")
    live = artifacts.committed_pipeline().predict(X).tolist()
    candidate = _candidate_pipeline(made["directory"]).predict(X).tolist()
    pairs = Counter(zip(live, candidate, strict=True))
    changed = sum(1 for a, b in zip(live, candidate, strict=True) if a != b)

    stability = made["comparison"]["checks"]["stability"]

    assert changed > 0, "the perturbation moved nobody: the comparison would be checked on zeros"
    assert stability["customers"] == len(X)
    assert stability["changed"] == changed
    assert stability["changed_share"] == changed / len(X)
    assert stability["confusion_matrix"]["counts"] == [
        [pairs[(i, j)] for j in range(len(SEGMENTS))] for i in range(len(SEGMENTS))
    ]
    for segment in stability["segments"]:
        members = live.count(segment["id"])
        moved = sum(1 for a, b in zip(live, candidate, strict=True) if a == segment["id"] != b)
        assert (segment["key"], segment["customers"], segment["changed"]) == (
            SEGMENTS[segment["id"]].key,
            members,
            moved,
        )
        assert segment["changed_share"] == moved / members


def test_psi_is_the_drift_modules_against_the_live_card_and_the_newest_evaluations(made: dict[str, Any]) -> None:
    X = load_training_data(made["data"]).features.to_numpy(dtype="float64")
    reference = artifacts.committed_card()["drift_reference"]["features"]
    window: np.ndarray = made["window"]

    checks = made["comparison"]["checks"]["psi"]

    assert checks["live_window"]["evaluations"] == 1200
    for j, name in enumerate(FEATURES):
        edges, shares = reference[name]["edges"], reference[name]["shares"]
        assert checks["live_training"]["features"][name]["psi"] == psi(edges, shares, X[:, j].tolist())
        window_shares = bin_shares(edges, window[:, j].tolist())
        assert checks["live_window"]["features"][name]["psi"] == psi(edges, window_shares, X[:, j].tolist())
    # The perturbation raised purchases by 40%: PSI sees it in purchases more than in payments.
    features = checks["live_training"]["features"]
    assert features["purchases"]["psi"] > features["payments"]["psi"]


def test_silhouette_and_shares_are_the_cards(made: dict[str, Any]) -> None:
    live = artifacts.committed_card()
    candidate = json.loads((made["directory"] / CARD_PATH.name).read_text(encoding="utf-8"))
    checks = made["comparison"]["checks"]

    assert checks["silhouette"]["live"] == live["metrics"]["silhouette"]
    assert checks["silhouette"]["candidate"] == candidate["metrics"]["silhouette"]
    assert [(s["key"], s["live"], s["candidate"]) for s in checks["shares"]["segments"]] == [
        (a["key"], a["size_share"], b["size_share"])
        for a, b in zip(live["segments"], candidate["segments"], strict=True)
    ]


# --- refusals: nothing written ---------------------------------------------------------------------------


def test_a_bad_data_file_is_refused_naming_the_column_and_the_row(tmp_path: Path) -> None:
    data = _perturbed_copy(tmp_path / "cc.csv", seed=12)
    frame = pd.read_csv(data, dtype=str)
    frame.loc[1234, "CREDIT_LIMIT"] = "7.500,00"  # a decimal comma
    frame.to_csv(data, index=False)
    store = IsolatedStore(home=tmp_path / "bentoml_home")
    before = _models_dir_state()

    result = _make_model(store, "--data", str(data), "--candidates-dir", str(tmp_path / "candidates"))

    assert result.returncode == 2
    assert "column CREDIT_LIMIT, row 1235 (line 1236): '7.500,00' is not a finite number" in result.stderr
    assert not (tmp_path / "candidates").exists()
    assert store.tags() == []
    assert _models_dir_state() == before


def test_a_records_database_that_is_not_there_is_refused_before_training(tmp_path: Path) -> None:
    data = _perturbed_copy(tmp_path / "cc.csv", seed=13)
    store = IsolatedStore(home=tmp_path / "bentoml_home")

    result = _make_model(
        store,
        "--data",
        str(data),
        "--candidates-dir",
        str(tmp_path / "candidates"),
        "--records-db",
        f"sqlite:///{tmp_path / 'absent.db'}",
    )

    assert result.returncode == 2
    assert "no such SQLite file" in result.stderr
    assert not (tmp_path / "absent.db").exists()
    assert not (tmp_path / "candidates").exists()
    assert store.tags() == []


# --- serving it beside the live one ------------------------------------------------------------------


def _make_env() -> dict[str, str]:
    """The project's environment without a RUN_DIR or CANDIDATES_DIR of the caller's: make's defaults."""
    return {k: v for k, v in project_env().items() if k not in ("RUN_DIR", "CANDIDATES_DIR", "MAKEFLAGS")}


def test_make_serve_candidate_serves_the_candidates_tag_and_card() -> None:
    """The recipe (dry run): the candidate's tag and its card outside the store, on port 3001 by default."""
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "serve-candidate", "VERSION=0123456789abcdef"],
        cwd=ROOT,
        env=_make_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    serve = next(line for line in result.stdout.replace("\\\n", " ").splitlines() if "bentoml serve" in line)
    assert f"MODEL_TAG={MODEL_NAME}:0123456789abcdef" in serve
    assert f"MODEL_CARD_PATH={CANDIDATES_DIR}/0123456789abcdef/{CARD_PATH.name}" in serve
    assert "--host 127.0.0.1 --port 3001" in serve


def test_make_serve_candidate_without_a_version_says_how() -> None:
    result = subprocess.run(
        ["make", "-o", ".venv/.installed", "serve-candidate"],
        cwd=ROOT,
        env=_make_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "usage: make serve-candidate VERSION=" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_served_candidate_answers_with_its_own_version(made: dict[str, Any], artifacts_dir: Path) -> None:
    directory: Path = made["directory"]
    version = directory.name
    candidate = _candidate_pipeline(directory)
    card = json.loads((directory / CARD_PATH.name).read_text(encoding="utf-8"))
    store: IsolatedStore = made["store"]
    server = servers.model_service(
        log_dir=artifacts_dir,
        BENTOML_HOME=str(store.home),
        MODEL_TAG=f"{MODEL_NAME}:{version}",
        MODEL_CARD_PATH=str(directory / CARD_PATH.name),
        MODEL_SERVICE_WORKERS="1",
    )
    X = load_training_data(made["data"]).features.to_numpy(dtype="float64")[:200]
    customers = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]
    server.start(timeout=180)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            metadata = client.get("/metadata")
            predicted = client.post("/predict_batch", json={"customers": customers})
    finally:
        server.stop()

    assert metadata.status_code == 200
    assert metadata.json()["model"] == {"name": MODEL_NAME, "version": version, "tag": f"{MODEL_NAME}:{version}"}
    assert metadata.json()["card"] == card
    assert predicted.headers["x-model-version"] == version
    assert [p["cluster"] for p in predicted.json()] == candidate.predict(X).tolist()


@pytest.mark.slow
def test_a_candidate_goes_live_only_through_the_registry_shadow_and_a_second_persons_promotion(
    made: dict[str, Any], artifacts_dir: Path, tmp_path: Path
) -> None:
    """The whole way of a retrained model, on the real services: the live model service (the committed
    model) and the candidate's (make serve-candidate's variables) side by side, one API knowing both.
    Registered from its service, it decides nothing; in shadow its segments are stored beside the
    records (checked against both pipelines on the same customers); promoted by someone other than
    its registrant, it segments every evaluation from the release's instant."""
    directory: Path = made["directory"]
    version = directory.name
    store: IsolatedStore = made["store"]
    live_pipeline: Pipeline = joblib.load(PICKLE_PATH)
    candidate = _candidate_pipeline(directory)
    frame = load_training_data(made["data"]).features
    X = frame[frame["credit_limit"] > 0].to_numpy(dtype="float64")[:150]
    customers = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]

    live_service = servers.model_service(log_dir=artifacts_dir, MODEL_SERVICE_WORKERS="1")
    candidate_service = servers.model_service(
        log_dir=artifacts_dir,
        BENTOML_HOME=str(store.home),
        MODEL_TAG=f"{MODEL_NAME}:{version}",
        MODEL_CARD_PATH=str(directory / CARD_PATH.name),
        MODEL_SERVICE_WORKERS="1",
    )
    database_url = f"sqlite:///{tmp_path / 'evaluations.db'}"
    live_service.start(timeout=180)
    candidate_service.start(timeout=180)
    api = servers.evaluation_api(
        model_url=live_service.url,
        database_url=database_url,
        log_dir=artifacts_dir,
        CANDIDATE_MODEL_SERVICE_URLS=json.dumps([candidate_service.url]),
        RELEASE_POLL_S="0.2",
        RELEASE_SWITCH_DELAY_S="1.0",
    )
    try:
        api.start(timeout=120)
        for name in ("rita", "rui"):
            cli_create_account(database_url, name, "risk")
        key = cli_create_key(database_url, "carga")
        with httpx.Client(base_url=api.url, timeout=30) as client:
            rita = bearer(token_for(api.url, "rita"))
            rui = bearer(token_for(api.url, "rui"))
            registered = client.post("/api/v1/model-versions", json={"version": version}, headers=rita)
            assert registered.status_code == 201, registered.text
            assert registered.json()["service_url"] == candidate_service.url.rstrip("/")
            assert registered.json()["card"] == json.loads((directory / CARD_PATH.name).read_text(encoding="utf-8"))
            model_id = registered.json()["id"]
            challenger = client.post("/api/v1/challengers", json={"model_version_id": model_id}, headers=rita).json()
            time.sleep(0.5)  # read by the API within RELEASE_POLL_S

            answers = []
            for i, customer in enumerate(customers):
                response = client.post(
                    "/api/v1/evaluations", json={"name": f"Cliente {i}", **customer}, headers=bearer(key)
                )
                assert response.status_code == 201, response.text
                answers.append(response.json())
            assert {a["model"]["version"] for a in answers} == {COMMITTED_VERSION}  # the live model answered

            report_path = f"/api/v1/challengers/{challenger['id']}/report"
            deadline = time.monotonic() + 30
            while client.get(report_path, headers=rui).json()["evaluations"] < len(customers):
                assert time.monotonic() < deadline, "the shadow did not store every evaluation"
                time.sleep(0.2)
            report = client.get(report_path, headers=rui).json()
            expected = Counter(
                (SEGMENTS[a].key, SEGMENTS[b].key)
                for a, b in zip(live_pipeline.predict(X), candidate.predict(X), strict=True)
            )
            moves = {(a, b): n for a, row in report["segment_moves"].items() for b, n in row.items() if n}
            assert moves == dict(expected)

            own = client.post(
                f"/api/v1/challengers/{challenger['id']}/promote",
                json={"justification": "Retreino conferido na sombra e no relatório."},
                headers=rita,
            )
            assert own.status_code == 403 and own.json()["error"] == "four_eyes"
            release = client.post(
                f"/api/v1/challengers/{challenger['id']}/promote",
                json={"justification": "Retreino conferido na sombra e no relatório."},
                headers=rui,
            )
            assert release.status_code == 200, release.text
            switch = datetime.fromisoformat(release.json()["effective_at"]).timestamp()
            time.sleep(max(0.0, switch - time.time()) + 0.1)
            after = client.post("/api/v1/evaluations", json={"name": "Cliente", **customers[0]}, headers=bearer(key))
            assert after.status_code == 201, after.text
            assert after.json()["model"]["version"] == version
            assert after.json()["segment"]["id"] == int(candidate.predict(X[:1])[0])
    finally:
        api.stop()
        candidate_service.stop()
        live_service.stop()


# Last: it rewrites the module candidate's comparison (without the records database).
def test_the_same_data_again_keeps_the_version_and_refreshes_only_the_comparison(made: dict[str, Any]) -> None:
    directory: Path = made["directory"]
    store: IsolatedStore = made["store"]
    card_before = (directory / CARD_PATH.name).read_bytes()
    store_before = store.snapshot()

    result = _make_model(store, "--data", str(made["data"]), "--candidates-dir", str(made["candidates"]))

    assert result.returncode == 0, result.stderr
    assert [p.name for p in made["candidates"].iterdir()] == [directory.name]
    assert (directory / CARD_PATH.name).read_bytes() == card_before
    assert store.snapshot() == store_before
    assert f"already in the model store: {MODEL_NAME}:{directory.name}" in result.stderr
    refreshed = json.loads((directory / "comparison.json").read_text(encoding="utf-8"))
    assert refreshed["records_database"] is False
    assert refreshed["checks"]["stability"] == made["comparison"]["checks"]["stability"]
