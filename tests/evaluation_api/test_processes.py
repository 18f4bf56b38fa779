"""The real processes: `bentoml serve` killed and restarted under a running uvicorn evaluation API.

Slow (two model-service starts). Durations are logged for the record, never asserted."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils import servers
from tests.utils.evaluations import body, until
from tests.utils.identity import bearer, cli_create_key

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)
URL = "/api/v1/evaluations"
NAME = "Zélia Quasímodo"


@pytest.fixture
def model(artifacts_dir: Path) -> Iterator[list[servers.Server]]:
    """The model service, our own instance (this test kills it); every instance started is stopped."""
    started = [servers.model_service(log_dir=artifacts_dir).start(timeout=240)]
    yield started
    for server in started:
        server.stop()


def record_count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        count: int = connection.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    return count


def test_the_api_fails_fast_while_the_model_service_is_down_and_recovers_by_itself(
    model: list[servers.Server], artifacts_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "evaluations.db"
    api = servers.evaluation_api(
        model_url=model[0].url,
        database_url=f"sqlite:///{db}",
        log_dir=artifacts_dir,
        BREAKER_TTL_S="1",
        EVALUATION_DEADLINE_S="2",
    )
    created = 0
    key = cli_create_key(f"sqlite:///{db}")
    with api, httpx.Client(base_url=api.url, timeout=10, headers=bearer(key)) as client:
        first = client.post(URL, json=body(name=NAME), headers={"X-Request-ID": "proc-up-1"})
        assert first.status_code == 201, first.text
        created += 1
        assert first.json()["request_id"] == "proc-up-1"
        assert client.get("/readyz").status_code == 200

        # A crash: the whole process group, at once.
        port = model[0].port
        model[0].kill()

        durations = []
        for n in range(6):
            started = time.perf_counter()
            response = client.post(URL, json=body(name=NAME), headers={"X-Request-ID": f"proc-down-{n}"})
            durations.append(round(time.perf_counter() - started, 3))
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "model_unavailable"
            assert response.json()["message"]
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["x-request-id"] == f"proc-down-{n}"
        logger.info("503 durations while down (s): %s", durations)  # the 4th on: circuit open
        # Fast: each answer within the evaluation deadline (2 s, retries included) plus a wide
        # margin for a loaded machine; never a hang.
        assert max(durations) < 2 + 1.5, durations
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["model_service"] == "unavailable"

        # Back on the same port: the API recovers without being touched.
        model.append(servers.model_service(port=port, log_dir=artifacts_dir).start(timeout=240))
        statuses: list[int] = []

        def evaluated() -> bool:
            response = client.post(URL, json=body())
            statuses.append(response.status_code)
            assert response.status_code in (201, 503), response.text
            return response.status_code == 201

        until(evaluated, timeout_s=30, interval_s=0.2, what="an evaluation to succeed after the restart")
        created += 1
        logger.info("after the restart: %s", statuses)
        for _ in range(3):
            assert client.post(URL, json=body()).status_code == 201
            created += 1
        assert until(lambda: client.get("/readyz").status_code == 200, timeout_s=10, what="/readyz")

    # One record per 201, none for the 503s.
    assert record_count(db) == created
    with sqlite3.connect(db) as connection:
        assert connection.execute(
            "SELECT count(*) FROM evaluations WHERE request_id LIKE 'proc-down-%'"
        ).fetchone() == (0,)

    # The process's log: the JSON lines carry request ids, never the name. The server runs without
    # an access log, so a successful evaluation writes no line; each failed one writes its own.
    assert api.log_path is not None
    lines = [json.loads(line) for line in api.log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    ids = {line["request_id"] for line in lines}
    assert {f"proc-down-{n}" for n in range(6)} <= ids
    assert "proc-up-1" not in ids
    assert NAME not in "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)


def test_every_line_of_the_apis_log_is_json(tmp_path: Path) -> None:
    # No model service: the evaluation fails, which logs too. A fresh log file (tmp_path): nothing from earlier runs.
    api = servers.evaluation_api(
        model_url=f"http://127.0.0.1:{servers.free_port()}",
        database_url=f"sqlite:///{tmp_path / 'e.db'}",
        log_dir=tmp_path,
    )
    key = cli_create_key(f"sqlite:///{tmp_path / 'e.db'}")
    with api, httpx.Client(base_url=api.url, timeout=10, headers=bearer(key)) as client:
        assert client.post(URL, json=body(), headers={"X-Request-ID": "proc-log-1"}).status_code == 503
    assert api.log_path is not None
    not_json = []
    for line in api.log_path.read_text(encoding="utf-8").splitlines():
        try:
            assert "request_id" in json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == []
