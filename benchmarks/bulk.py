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


@dataclass(frozen=True)
class BulkPath:
    path: str
    content_type: str
    encode: Callable[[list[dict[str, float]]], bytes]
    count: Callable[[httpx.Response], int]  # how many predictions came back


def _predict_json(customers: list[dict[str, float]]) -> bytes:
    return orjson.dumps({"customers": customers})


BULK_PATHS: dict[str, BulkPath] = {
    # The single-customer contract with many customers: BentoML validates each item (pydantic),
    # predicts them in one pipeline call (max_batch_size is above 100,000) and answers a JSON list.
    "predict_json": BulkPath("/predict", "application/json", _predict_json, lambda r: len(r.json())),
}


def run(*, url: str, n_customers: int = 100_000, repeats: int = 3, path_name: str = "predict_json") -> dict[str, Any]:
    """Send the portfolio `repeats` times (after one unmeasured warm-up); customers/s from the median time.

    The clock covers the whole exchange as a client sees it: sending the encoded body, the service's
    parsing, validation, prediction and encoding, and receiving the answer. Encoding the request
    on the client is not counted (it is done once, before).
    """
    bulk = BULK_PATHS[path_name]
    body = bulk.encode(workload.customers(n_customers, seed=1))
    times = []
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0)) as client:
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            response = client.post(bulk.path, content=body, headers={"Content-Type": bulk.content_type})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"bulk {bulk.path} answered {response.status_code}: {response.text[:300]}")
            if bulk.count(response) != n_customers:
                raise RuntimeError(f"bulk {bulk.path} returned {bulk.count(response)} predictions for {n_customers}")
            if attempt:  # the first is the warm-up
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
