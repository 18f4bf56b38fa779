"""A promotion and a rollback seen by every API process at the same instant, under load, through the
documented command line (`python -m evaluation_api.releases`): two uvicorn processes on one SQLite file,
the model service a stub on a real socket.

Under load nothing fails, every answer (and its record) names exactly one of the two versions, every
answer finished before the switch names the old one and every answer started after it the new one,
whichever process gave it."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import SEGMENTS, SEGMENTS_BY_KEY
from tests.evaluation_api.test_releases import SEED_TEXT, candidate_text
from tests.utils import servers
from tests.utils.evaluations import MODEL_VERSION, SEGMENT_CUSTOMERS, ModelServiceStub
from tests.utils.identity import PASSWORD, bearer, cli_create_account, cli_create_key

pytestmark = pytest.mark.slow
OLD = SEED_TEXT.split("version:", 1)[1].split("\n", 1)[0].strip().strip("'\"")


CANDIDATE = "c0ffee00c0ffee00"


@pytest.fixture
def candidate_model() -> Iterator[ModelServiceStub]:
    """A second model service: another model version (the committed centroids rotated by one)."""
    with ModelServiceStub(version=CANDIDATE, shift=1) as service:
        yield service


@pytest.fixture
def two_apis(
    tmp_path: Path, stub: ModelServiceStub, candidate_model: ModelServiceStub, artifacts_dir: Path
) -> Iterator[tuple[list[str], str]]:
    db = tmp_path / "evaluations.db"
    url = f"sqlite:///{db}"
    signing = secrets.token_urlsafe(48)
    env = {
        "AUTH_SIGNING_KEY": signing, "RELEASE_POLL_S": "0.2", "RELEASE_SWITCH_DELAY_S": "1.5",
        "CANDIDATE_MODEL_SERVICE_URLS": f'["{candidate_model.url}"]',
    }  # fmt: skip
    first = servers.evaluation_api(model_url=stub.url, database_url=url, log_dir=artifacts_dir, **env)
    with first:  # the first start migrates and seeds; the second finds both done
        second = servers.evaluation_api(model_url=stub.url, database_url=url, log_dir=artifacts_dir, **env)
        with second:
            yield [first.url, second.url], url


def cli(api_url: str, username: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "evaluation_api.releases", "--api-url", api_url, "--username", username, *args],
        cwd=servers.ROOT,
        env=servers.project_env(),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Load:
    """Clients evaluating on both processes, in turn, until stopped; every answer kept with its times."""

    def __init__(self, urls: list[str], key: str, clients: int = 8) -> None:
        self.answers: list[tuple[float, float, int, dict[str, Any]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(urls[i % len(urls)], key), daemon=True) for i in range(clients)
        ]

    def _client(self, url: str, key: str) -> None:
        customer = {"name": "Cliente Carga", **SEGMENT_CUSTOMERS["least_active"]}
        with httpx.Client(base_url=url, headers=bearer(key), timeout=10) as client:
            while not self._stop.is_set():
                started = time.time()
                try:
                    response = client.post("/api/v1/evaluations", json=customer)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                finished = time.time()
                if response.status_code != 201:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    self.answers.append((started, finished, response.status_code, response.json()))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def policy_of(answer: dict[str, Any]) -> str:
    return str(answer["policy_version"])


def model_of(answer: dict[str, Any]) -> str:
    return str(answer["model"]["version"])


def check_switch(load: Load, effective_at: str, old: str, new: str, version: Any = policy_of) -> None:
    switch = datetime.fromisoformat(effective_at).timestamp()
    named = {version(answer) for *_, answer in load.answers}
    assert named <= {old, new}, named
    before = [a for started, finished, _, a in load.answers if finished < switch]
    after = [a for started, finished, _, a in load.answers if started > switch + 0.05]
    assert before and after, (len(before), len(after))
    assert {version(a) for a in before} == {old}
    assert {version(a) for a in after} == {new}


def test_promotion_and_rollback_switch_every_process_at_once_under_load(two_apis: tuple[list[str], str]) -> None:
    urls, database_url = two_apis
    for name in ("rita", "rui"):
        cli_create_account(database_url, name, "risk")
    key = cli_create_key(database_url, "carga")
    db = Path(database_url.removeprefix("sqlite:///"))
    candidate = db.parent / "candidate.yaml"
    candidate.write_text(candidate_text("v2", least_active="review"), encoding="utf-8")

    created = cli(urls[0], "rita", "--json", "create", str(candidate))
    version_id = int(created.split('"id": ', 1)[1].split(",", 1)[0])
    cli(urls[1], "rita", "challenger", "start", str(version_id))
    refused = subprocess.run(
        [sys.executable, "-m", "evaluation_api.releases", "--api-url", urls[0], "--username", "rita", "promote", "1",
         "--justification", "Sombra e backtest conferidos pela equipe."],
        cwd=servers.ROOT, env=servers.project_env(), input=PASSWORD + "\n", capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and "four_eyes" in refused.stderr

    with Load(urls, key) as load:
        time.sleep(1.0)
        promoted = cli(urls[1], "rui", "--json", "promote", "1", "--justification", "Sombra e backtest conferidos.")
        effective_at = promoted.split('"effective_at": "', 1)[1].split('"', 1)[0]
        time.sleep(3.0)
    assert load.failures == []
    check_switch(load, effective_at, OLD, "v2")
    assert {a["decision"] for *_, a in load.answers if a["policy_version"] == "v2"} == {"review"}

    with Load(urls, key) as load:
        time.sleep(1.0)
        back = cli(urls[0], "rui", "--json", "rollback", "--justification", "Voltar: reclamações no primeiro dia.")
        effective_at = back.split('"effective_at": "', 1)[1].split('"', 1)[0]
        time.sleep(3.0)
    assert load.failures == []
    check_switch(load, effective_at, "v2", OLD)

    with sqlite3.connect(db) as connection:
        versions = {row[0] for row in connection.execute("SELECT DISTINCT policy_version FROM evaluations")}
        events = [row[0] for row in connection.execute("SELECT action FROM audit_events WHERE action LIKE 'release.%'")]
    assert versions == {OLD, "v2"}
    assert events == ["release.promote", "release.rollback"]
    report = cli(urls[0], "rui", "report", "1")
    assert "challenger 1 (policy v2, model live)" in report


def test_a_model_promotion_and_rollback_switch_every_process_to_the_other_service_under_load(
    two_apis: tuple[list[str], str], stub: ModelServiceStub, candidate_model: ModelServiceStub
) -> None:
    urls, database_url = two_apis
    for name in ("rita", "rui"):
        cli_create_account(database_url, name, "risk")
    key = cli_create_key(database_url, "carga")
    created = cli(urls[0], "rita", "--json", "model", "create", CANDIDATE)
    assert f'"service_url": "{candidate_model.url}"' in created
    cli(urls[1], "rita", "challenger", "start", "--model-version", "1")

    with Load(urls, key) as load:
        time.sleep(1.0)
        promoted = cli(urls[1], "rui", "--json", "promote", "1", "--justification", "Modelo novo conferido na sombra.")
        effective_at = promoted.split('"effective_at": "', 1)[1].split('"', 1)[0]
        time.sleep(3.0)
    assert load.failures == []
    check_switch(load, effective_at, MODEL_VERSION, CANDIDATE, version=model_of)
    # The promoted model segments: least_active's customer is now in the next segment.
    after = {a["segment"]["key"] for *_, a in load.answers if model_of(a) == CANDIDATE}
    assert after == {SEGMENTS[(SEGMENTS_BY_KEY["least_active"].id + 1) % len(SEGMENTS)].key}
    live_calls = len(stub.calls)

    with Load(urls, key) as load:
        time.sleep(1.0)
        back = cli(urls[0], "rui", "--json", "rollback", "--justification", "Voltar ao modelo anterior, por cautela.")
        effective_at = back.split('"effective_at": "', 1)[1].split('"', 1)[0]
        time.sleep(3.0)
    assert load.failures == []
    check_switch(load, effective_at, CANDIDATE, MODEL_VERSION, version=model_of)
    assert len(stub.calls) > live_calls  # the first service answers again

    db = Path(database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as connection:
        models = {row[0] for row in connection.execute("SELECT DISTINCT model_version FROM evaluations")}
        policies = {row[0] for row in connection.execute("SELECT DISTINCT policy_version FROM evaluations")}
    assert models == {MODEL_VERSION, CANDIDATE}
    assert policies == {OLD}
