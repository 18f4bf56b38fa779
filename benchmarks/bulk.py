"""Bulk: one portfolio of 100,000 customers segmented through the model service's batch path.

The path is chosen in one place, BULK_PATHS: each entry encodes the portfolio for one endpoint and
checks the answer. To benchmark another bulk endpoint, add an entry (docs/API.md has the contracts).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from benchmarks import workload
from models import FEATURES


@dataclass(frozen=True)
class BulkPath:
    path: str
    content_type: str
    encode: Callable[[list[dict[str, float]]], bytes]
    count: Callable[[httpx.Response], int]  # how many predictions came back


def _predict_json(customers: list[dict[str, float]]) -> bytes:
    return orjson.dumps({"customers": customers})


def _bulk_rows(customers: list[dict[str, float]]) -> bytes:
    return orjson.dumps({"features": [[c[f] for f in FEATURES] for c in customers]})


BULK_PATHS: dict[str, BulkPath] = {
    # The batch path (docs/API.md): rows of five numbers in, segment ids out; no per-customer objects.
    "predict_bulk": BulkPath("/predict_bulk", "application/json", _bulk_rows, lambda r: len(r.json())),
    # For comparison, the single-customer contract with many customers: BentoML validates each item
    # (pydantic), predicts them in one call and answers one object per customer with its distances.
    "predict": BulkPath("/predict", "application/json", _predict_json, lambda r: len(r.json())),
}
# The path the bulk goal is measured on.
HEADLINE = "predict_bulk"


def run(
    *, url: str, n_customers: int = 100_000, repeats: int = 3, path_name: str = HEADLINE, warm_up: bool = True
) -> dict[str, Any]:
    """Send the portfolio `repeats` times (after an unmeasured warm-up); customers/s from the median time.

    The clock covers the whole exchange as a client sees it: sending the encoded body, the service's
    parsing, validation, prediction and encoding, and receiving the answer. Encoding the request
    on the client is not counted (it is done once, before).
    """
    bulk = BULK_PATHS[path_name]
    body = bulk.encode(workload.customers(n_customers, seed=1))
    times = []
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0)) as client:
        for attempt in range(repeats + 1 if warm_up else repeats):
            started = time.perf_counter()
            response = client.post(bulk.path, content=body, headers={"Content-Type": bulk.content_type})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"bulk {bulk.path} answered {response.status_code}: {response.text[:300]}")
            if bulk.count(response) != n_customers:
                raise RuntimeError(f"bulk {bulk.path} returned {bulk.count(response)} predictions for {n_customers}")
            if attempt or not warm_up:  # the first is the warm-up
                times.append(elapsed)
    median = statistics.median(times)
    return {
        "path": bulk.path,
        "method": path_name,
        "customers": n_customers,
        "request_mb": round(len(body) / 1e6, 2),
        "seconds": [round(t, 3) for t in times],
        "median_s": round(median, 3),
        "customers_per_s": round(n_customers / median),
    }
