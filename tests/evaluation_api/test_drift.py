"""Input drift: psi() and the monitoring window's collector (evaluation_api/observability/drift.py, monitoring.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from contract import DECISIONS, FEATURE_NAMES, SEGMENT_KEYS
from evaluation_api.observability.drift import EPSILON, PSI_MAJOR, PSI_MODERATE, Reference, bin_shares, psi
from evaluation_api.observability.monitoring import DriftMonitor
from tests.utils.artifacts import REAL_DATA
from tests.utils.evaluations import MODEL_VERSION, metadata
from tests.utils.traffic import Source, training_like

SOURCES = [
    pytest.param("real", marks=pytest.mark.skipif(not REAL_DATA.is_file(), reason=f"{REAL_DATA} is absent")),
    "card",
]
REFERENCE = Reference.from_metadata(metadata(), FEATURE_NAMES)
BALANCE = FEATURE_NAMES.index("balance")


# --- psi() ------------------------------------------------------------------------------------------------


def test_psi_by_the_formula() -> None:
    # Reference: half <= 1, half > 1. Observed: three in four <= 1.
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi([1.0], [0.5, 0.5], [0, 0.5, 1, 2]) == pytest.approx(expected)
    assert psi([1.0], [0.5, 0.5], [0, 2]) == 0


def test_a_value_on_an_edge_falls_in_the_lower_bin() -> None:
    assert bin_shares([0.0, 10.0], [0, 0, 10, 10.01]) == [0.5, 0.25, 0.25]


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    value = psi([1.0], [0.5, 0.5], [0, 0, 0])
    assert math.isfinite(value)
    assert value == pytest.approx((1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5))


def test_psi_refuses_mismatched_shares_and_no_values() -> None:
    with pytest.raises(ValueError, match="2 edges need 3 shares"):
        psi([1.0, 2.0], [0.5, 0.5], [1])
    with pytest.raises(ValueError, match="at least one value"):
        psi([1.0], [0.5, 0.5], [])


@pytest.mark.parametrize("source", SOURCES)
def test_traffic_like_the_training_data_keeps_every_psi_under_0_1(source: Source) -> None:
    traffic = training_like(5000, source=source, seed=1)
    for j, name in enumerate(FEATURE_NAMES):
        assert REFERENCE.features[name].psi(traffic[:, j]) < PSI_MODERATE, name


@pytest.mark.parametrize("source", SOURCES)
def test_balances_ten_times_larger_drift_and_purchases_do_not(source: Source) -> None:
    traffic = training_like(5000, source=source, seed=2)
    traffic[:, BALANCE] *= 10
    assert REFERENCE.features["balance"].psi(traffic[:, BALANCE]) > PSI_MAJOR
    purchases = FEATURE_NAMES.index("purchases")
    assert REFERENCE.features["purchases"].psi(traffic[:, purchases]) < PSI_MODERATE


def test_a_card_without_reference_bins_is_refused() -> None:
    old = metadata()
    old["card"] = {k: v for k, v in old["card"].items() if k != "drift_reference"}
    with pytest.raises(ValueError, match="no drift reference for balance"):
        Reference.from_metadata(old, FEATURE_NAMES)


# --- the window and its collector ---------------------------------------------------------------------------


def monitor(*, size: int = 1000, min_evaluations: int = 100) -> DriftMonitor:
    return DriftMonitor(
        feature_names=FEATURE_NAMES,
        segment_keys=SEGMENT_KEYS,
        decisions=DECISIONS,
        size=size,
        min_evaluations=min_evaluations,
    )


def scrape(collector: DriftMonitor) -> dict[tuple[str, str], float]:
    """{(metric, label value): value} of one scrape."""
    registry = CollectorRegistry()
    registry.register(collector)
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, next(iter(sample.labels.values()), ""))] = sample.value
    return samples


def feed(
    m: DriftMonitor, traffic: np.ndarray[Any, Any], *, segment: str = "least_active", decision: str = "denied"
) -> None:
    for row in traffic:
        m.observe(dict(zip(FEATURE_NAMES, row, strict=True)), segment, decision, MODEL_VERSION)


def test_no_psi_before_the_reference_nor_before_enough_evaluations() -> None:
    m = monitor(min_evaluations=100)
    assert scrape(m) == {("evaluation_drift_window_evaluations", ""): 0}
    feed(m, training_like(99, source="card"))
    samples = scrape(m)
    assert samples[("evaluation_drift_window_evaluations", "")] == 99
    assert not any(name == "evaluation_input_psi" for name, _ in samples)
    m.reference = REFERENCE
    assert not any(name == "evaluation_input_psi" for name, _ in scrape(m))
    feed(m, training_like(1, source="card"))
    assert {label for name, label in scrape(m) if name == "evaluation_input_psi"} == set(FEATURE_NAMES)


def test_the_window_keeps_only_the_newest_evaluations() -> None:
    m = monitor(size=200, min_evaluations=1)
    m.reference = REFERENCE
    drifted = training_like(200, source="card", seed=3)
    drifted[:, BALANCE] *= 10
    feed(m, drifted, segment="cash_advance_users", decision="review")
    assert scrape(m)[("evaluation_input_psi", "balance")] > PSI_MAJOR
    fresh = training_like(200, source="card", seed=4)
    feed(m, fresh)  # pushes every drifted one out
    samples = scrape(m)
    assert samples[("evaluation_drift_window_evaluations", "")] == 200
    assert samples[("evaluation_input_psi", "balance")] == pytest.approx(
        psi(REFERENCE.features["balance"].edges, REFERENCE.features["balance"].shares, fresh[:, BALANCE])
    )
    assert samples[("evaluation_segment_share", "least_active")] == 1
    assert samples[("evaluation_segment_share", "cash_advance_users")] == 0
    assert samples[("evaluation_decision_share", "denied")] == 1


def test_segment_shares_against_their_training_shares() -> None:
    m = monitor(min_evaluations=1)
    m.reference = REFERENCE
    feed(m, training_like(3, source="card"), segment="least_active", decision="denied")
    feed(m, training_like(1, source="card"), segment="low_limit_light_users", decision="approved")
    samples = scrape(m)
    assert samples[("evaluation_segment_share", "least_active")] == 0.75
    assert samples[("evaluation_segment_share", "low_limit_light_users")] == 0.25
    assert samples[("evaluation_decision_share", "approved")] == 0.25
    assert samples[("evaluation_decision_share", "review")] == 0
    card_shares: Mapping[str, float] = {s["key"]: s["size_share"] for s in metadata()["card"]["segments"]}
    for key in SEGMENT_KEYS:
        assert samples[("evaluation_segment_training_share", key)] == card_shares[key]


async def test_the_reference_is_fetched_until_the_model_service_answers_and_again_for_a_new_model() -> None:
    calls: list[str] = []
    answers: list[Any] = [OSError("connection refused"), metadata(), metadata("another0version0")]

    async def fetch() -> Mapping[str, Any]:
        answer = answers[len(calls)]
        calls.append("fetch")
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    m = monitor()
    m.start(fetch)
    assert m._loader is not None
    loader = m._loader
    await asyncio.wait_for(loader, timeout=10)  # one failure, one retry after a second
    assert m.reference is not None and m.reference.model_version == MODEL_VERSION
    m.observe(dict.fromkeys(FEATURE_NAMES, 1.0), "least_active", "denied", "another0version0")
    assert m._loader is not loader
    await asyncio.wait_for(m._loader, timeout=10)
    assert m.reference.model_version == "another0version0"
    assert len(calls) == 3
    await m.stop()
