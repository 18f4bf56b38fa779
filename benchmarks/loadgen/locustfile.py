"""Locust users for the paced and timed runs; configured by environment variables set by locust_runner.

BENCH_BODIES   a JSON file: a list of request bodies, sent in turn
BENCH_PATH     the POST path (e.g. /avaliar)
BENCH_RATE     requests per second per user (0: as fast as answers come, closed loop)
BENCH_LOG      where to write every request as one JSON line: start time, latency, status, body index
               and, with BENCH_CAPTURE=1, the response's `id`, model version and policy version
BENCH_PAGES    optional comma-separated GET paths polled by one PageUser (e.g. "/,/healthz")
BENCH_PAGE_RATE  requests per second of that PageUser (default 5)
BENCH_HEADERS  optional JSON object of headers sent with every request (e.g. Authorization)

Locust measures; this file only says what to send and keeps each request's outcome.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import MasterRunner

with open(os.environ["BENCH_BODIES"], encoding="utf-8") as _f:
    _bodies = [json.dumps(b).encode() for b in json.load(_f)]
_counter = itertools.count()
_rate = float(os.environ.get("BENCH_RATE", "0"))
_capture = os.environ.get("BENCH_CAPTURE") == "1"
_headers: dict[str, str] = json.loads(os.environ.get("BENCH_HEADERS") or "{}")
_records: list[tuple[Any, ...]] = []


@events.request.add_listener
def _keep(
    request_type: str,
    name: str,
    response_time: float,
    response: Any,
    context: dict[str, Any],
    exception: Exception | None,
    start_time: float,
    **_: Any,
) -> None:
    status = getattr(response, "status_code", 0) or 0
    record_id = version = policy = None
    if _capture and 200 <= status < 300 and request_type == "POST":
        try:
            payload = json.loads(response.content)
            record_id = payload.get("id")
            version = (payload.get("model") or {}).get("version") or payload.get("model_version")
            policy = payload.get("policy_version")  # /api/v1/evaluations names it; /avaliar does not
        except (ValueError, AttributeError):
            pass
    _records.append(
        (
            request_type,
            name,
            start_time,
            round(response_time, 3),
            status,
            context.get("body"),
            record_id,
            version,
            policy,
            type(exception).__name__ if exception else None,
        )
    )


@events.test_stop.add_listener
@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return
    keys = ("method", "path", "start", "latency_ms", "status", "body", "id", "version", "policy", "exception")
    with open(os.environ["BENCH_LOG"], "w", encoding="utf-8") as f:
        for record in _records:
            f.write(json.dumps(dict(zip(keys, record, strict=True))) + "\n")


class EvaluationUser(FastHttpUser):
    wait_time = constant_throughput(_rate) if _rate > 0 else constant(0)
    network_timeout = 10.0
    connection_timeout = 5.0

    @task
    def post(self) -> None:
        i = next(_counter) % len(_bodies)
        self.client.post(
            os.environ["BENCH_PATH"],
            data=_bodies[i],
            headers={"Content-Type": "application/json", **_headers},
            context={"body": i},
        )


class PageUser(FastHttpUser):
    fixed_count = 1
    wait_time = constant_throughput(float(os.environ.get("BENCH_PAGE_RATE", "5")))
    network_timeout = 5.0
    _pages = itertools.cycle([p for p in os.environ.get("BENCH_PAGES", "/").split(",") if p])

    @task
    def get(self) -> None:
        self.client.get(next(self._pages), headers=_headers)
