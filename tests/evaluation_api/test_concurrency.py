"""Many evaluations at once, in one event loop (the app's lifespan run by hand, requests over
httpx.ASGITransport): every one answered 201 and recorded exactly once, in fewer model calls."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from evaluation_api.main import create_app
from models import FEATURES
from tests.utils.evaluations import ModelServiceStub, body, make_settings
from tests.utils.identity import analyst_headers

URL = "/api/v1/evaluations"
N = 50


def customer(i: int) -> dict[str, Any]:
    """A distinct customer per i (distinct figures too, so a mixed-up answer shows)."""
    return body(
        name=f"Cliente {i:03d}",
        customer_id=f"C{i:03d}",
        balance=100.0 + i,
        purchases=1000.0 + 7 * i,
        cash_advance=float(i % 3),
        credit_limit=5000.0 + 10 * i,
        payments=1200.0 + i,
    )


async def test_concurrent_evaluations_are_coalesced_and_each_recorded_once(
    tmp_path: Path, stub: ModelServiceStub
) -> None:
    stub.delay_s = 0.05  # a model call takes a moment: evaluations arriving meanwhile queue and go together
    app = create_app(stub.settings(make_settings(tmp_path, model_batch_max_in_flight=2, model_batch_max_size=8)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=analyst_headers(app)
        ) as client:
            responses = await asyncio.gather(
                *(client.post(URL, json=customer(i), headers={"X-Request-ID": f"conc-{i:03d}"}) for i in range(N))
            )
            assert [r.status_code for r in responses] == [201] * N, [r.text for r in responses if r.status_code != 201]
            records = await asyncio.gather(*(client.get(f"{URL}/{r.json()['id']}") for r in responses))

    # Coalesced: fewer /predict calls than evaluations, none larger than the batch size, and every
    # customer sent exactly once.
    assert len(stub.calls) < N
    assert all(1 <= len(customers) <= 8 for customers in stub.customers)
    sent = [c for call in stub.customers for c in call]
    assert sorted(tuple(c[f] for f in FEATURES) for c in sent) == sorted(
        tuple(float(customer(i)[f]) for f in FEATURES) for i in range(N)
    )
    # Each call carries the request ids of its customers, comma-joined, in the order of its customers.
    by_id = {f"conc-{i:03d}": customer(i) for i in range(N)}
    for header, customers in zip(stub.request_ids, stub.customers, strict=True):
        ids = header.split(",")
        assert [{f: c[f] for f in FEATURES} for c in customers] == [
            {f: float(by_id[i][f]) for f in FEATURES} for i in ids
        ]
    assert sorted(i for header in stub.request_ids for i in header.split(",")) == sorted(by_id)

    # Every answer is its own customer's, and so is every record.
    for i, (response, record) in enumerate(zip(responses, records, strict=True)):
        assert response.headers["x-request-id"] == f"conc-{i:03d}"
        assert response.json()["request_id"] == f"conc-{i:03d}"
        data = record.json()
        assert data["request_id"] == f"conc-{i:03d}"
        assert data["input"] == {**customer(i), **{f: float(customer(i)[f]) for f in FEATURES}}
        assert data["decision"] == response.json()["decision"]

    with sqlite3.connect(tmp_path / "evaluations.db") as connection:
        rows = connection.execute("SELECT customer_id_hash, count(*) FROM evaluations GROUP BY 1").fetchall()
    assert len(rows) == N and {count for _, count in rows} == {1}


async def test_a_burst_while_the_model_is_down_records_nothing(tmp_path: Path, stub: ModelServiceStub) -> None:
    stub.default = "read_error"
    app = create_app(stub.settings(make_settings(tmp_path)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=analyst_headers(app)
        ) as client:
            responses = await asyncio.gather(*(client.post(URL, json=customer(i)) for i in range(20)))
    assert {r.status_code for r in responses} == {503}
    assert {r.json()["error"] for r in responses} == {"model_unavailable"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses)
    with sqlite3.connect(tmp_path / "evaluations.db") as connection:
        assert connection.execute("SELECT count(*) FROM evaluations").fetchone() == (0,)


async def test_evaluations_that_arrive_together_share_one_call_even_with_free_slots(
    tmp_path: Path, stub: ModelServiceStub
) -> None:
    # Every evaluation could have had a call of its own (as many slots as evaluations), yet the event
    # loop's turn gathers those it is already working on into one /predict_batch call.
    n = 20
    app = create_app(stub.settings(make_settings(tmp_path, model_batch_max_in_flight=n)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=analyst_headers(app)
        ) as client:
            responses = await asyncio.gather(*(client.post(URL, json=customer(i)) for i in range(n)))
            assert [r.status_code for r in responses] == [201] * n
            calls = len(stub.calls)
            # A lone evaluation still goes at once, alone.
            assert (await client.post(URL, json=customer(n))).status_code == 201
    assert calls < n / 2
    assert len(stub.calls) == calls + 1 and len(stub.customers[-1]) == 1
