"""Drift and decision monitoring through the API: evaluations in, gauges out on /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from contract import FEATURE_NAMES, SEGMENT_KEYS
from evaluation_api.observability.drift import PSI_MAJOR, psi
from tests.utils.evaluations import TestClient, metadata, until
from tests.utils.traffic import training_like

WINDOW = 100


def scrape(client: TestClient) -> dict[tuple[str, str], float]:
    """{(metric, its one label's value): value} for the monitoring gauges."""
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith(("evaluation_input_psi", "evaluation_segment", "evaluation_decision_share")):
                samples[(sample.name, next(iter(sample.labels.values())))] = sample.value
    return samples


def test_metrics_show_drift_segment_mix_and_decisions_over_the_window(start_app: Callable[..., Any]) -> None:
    traffic = training_like(WINDOW + 20, source="card", seed=5)
    traffic[:, FEATURE_NAMES.index("balance")] *= 10
    with start_app(drift_window_size=WINDOW, drift_min_evaluations=WINDOW) as client:
        # The reference comes from the model service's /metadata, fetched in the background at start.
        until(lambda: ("evaluation_segment_training_share", "least_active") in scrape(client), what="reference")
        answers = []
        for i, row in enumerate(traffic):
            body = {"name": f"Cliente {i}", **dict(zip(FEATURE_NAMES, row, strict=True))}
            response = client.post("/api/v1/evaluations", json=body)
            assert response.status_code == 201, response.text
            answers.append(response.json())
        samples = scrape(client)

    window = traffic[-WINDOW:]
    reference = metadata()["card"]["drift_reference"]["features"]
    for j, name in enumerate(FEATURE_NAMES):
        expected = psi(reference[name]["edges"], reference[name]["shares"], window[:, j])
        assert np.isclose(samples[("evaluation_input_psi", name)], expected), name
    assert samples[("evaluation_input_psi", "balance")] > PSI_MAJOR
    assert samples[("evaluation_input_psi", "purchases")] < 0.1

    segments = Counter(a["segment"]["key"] for a in answers[-WINDOW:])
    decisions = Counter(a["decision"] for a in answers[-WINDOW:])
    training = {s["key"]: s["size_share"] for s in metadata()["segments"]}
    for key in SEGMENT_KEYS:
        assert samples[("evaluation_segment_share", key)] == segments[key] / WINDOW
        assert samples[("evaluation_segment_training_share", key)] == training[key]
    for decision in ("approved", "review", "denied"):
        assert samples[("evaluation_decision_share", decision)] == decisions[decision] / WINDOW


def test_no_psi_until_the_window_has_enough_evaluations(start_app: Callable[..., Any]) -> None:
    with start_app(drift_min_evaluations=3) as client:
        until(lambda: ("evaluation_segment_training_share", "least_active") in scrape(client), what="reference")
        for i, row in enumerate(training_like(3, source="card", seed=6)):
            body = {"name": f"Cliente {i}", **dict(zip(FEATURE_NAMES, row, strict=True))}
            assert client.post("/api/v1/evaluations", json=body).status_code == 201
            names = {name for name, _ in scrape(client)}
            assert ("evaluation_input_psi" in names) == (i == 2)
