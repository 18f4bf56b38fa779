"""The gate's verdicts and its reading of the live window, in process (no store, no training CLI).

The live model is the committed one; the candidate is trained here on synthetic customers
(tests/utils/data.py), whose population differs from the real one: the gate must say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evaluation_api.observability.drift import PSI_MODERATE
from models import FEATURES
from models.gate import (
    DEFAULT_THRESHOLDS,
    MIN_WINDOW_EVALUATIONS,
    Model,
    Thresholds,
    WindowError,
    compare,
    markdown,
    read_live_window,
)
from models.train import build_card, fit, load_training_data
from tests.utils import artifacts
from tests.utils.data import write_cc_general_csv
from tests.utils.servers import free_port


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    csv = write_cc_general_csv(tmp_path_factory.mktemp("gate") / "cc.csv", n=600, seed=21)
    data = load_training_data(csv)
    pipeline = fit(data.features)
    card = build_card(pipeline, data, seed=42, pickle_sha256="0" * 64)
    live_card = artifacts.committed_card()
    return {
        "live": Model(version=live_card["pickle_sha256"][:16], card=live_card, pipeline=artifacts.committed_pipeline()),
        "candidate": Model(version="0" * 16, card=card, pipeline=pipeline),
        "X": data.features.to_numpy(dtype="float64"),
    }


def test_each_verdict_is_its_value_against_the_thresholds_and_the_overall_the_worst(models: dict[str, Any]) -> None:
    comparison = compare(live=models["live"], candidate=models["candidate"], features=models["X"])
    checks = comparison["checks"]
    t = DEFAULT_THRESHOLDS

    def expected(value: float, warn: float, fail: float) -> str:
        return "fail" if value > fail else "warn" if value > warn else "pass"

    stability = checks["stability"]
    overall = expected(stability["changed_share"], t.changed_share_warn, t.changed_share_fail)
    for s in stability["segments"]:
        if s["customers"]:
            limits = (t.segment_changed_share_warn, t.segment_changed_share_fail)
            assert s["verdict"] == expected(s["changed_share"], *limits)
    order = ["pass", "warn", "fail"]
    assert stability["verdict"] == max([overall, *(s["verdict"] for s in stability["segments"])], key=order.index)
    for name in FEATURES:
        f = checks["psi"]["live_training"]["features"][name]
        assert f["verdict"] == expected(f["psi"], t.psi_warn, t.psi_fail)
    drop = checks["silhouette"]["live"] - checks["silhouette"]["candidate"]
    assert checks["silhouette"]["verdict"] == expected(drop, t.silhouette_drop_warn, t.silhouette_drop_fail)
    for s in checks["shares"]["segments"]:
        assert s["verdict"] == expected(abs(s["change"]), t.share_change_warn, t.share_change_fail)
    assert comparison["verdict"] == max((c["verdict"] for c in checks.values()), key=order.index)
    # Synthetic customers are not the real population: at least one check must not pass.
    assert comparison["verdict"] != "pass"


def test_thresholds_decide_the_verdict(models: dict[str, Any]) -> None:
    lenient = Thresholds(
        changed_share_warn=1.0,
        changed_share_fail=1.0,
        segment_changed_share_warn=1.0,
        segment_changed_share_fail=1.0,
        psi_warn=100.0,
        psi_fail=100.0,
        silhouette_drop_warn=1.0,
        silhouette_drop_fail=1.0,
        share_change_warn=1.0,
        share_change_fail=1.0,
    )
    strict = Thresholds(changed_share_warn=-1.0, changed_share_fail=-1.0)

    assert (
        compare(live=models["live"], candidate=models["candidate"], features=models["X"], thresholds=lenient)["verdict"]
        == "pass"
    )
    judged = compare(live=models["live"], candidate=models["candidate"], features=models["X"], thresholds=strict)
    assert judged["checks"]["stability"]["verdict"] == judged["verdict"] == "fail"
    assert judged["thresholds"]["changed_share_fail"] == -1.0


def test_a_window_too_small_for_psi_is_skipped_and_said(models: dict[str, Any]) -> None:
    window = models["X"][: MIN_WINDOW_EVALUATIONS - 1]

    comparison = compare(live=models["live"], candidate=models["candidate"], features=models["X"], window=window)

    entry = comparison["checks"]["psi"]["live_window"]
    assert entry["verdict"] == "skipped"
    assert entry["evaluations"] == MIN_WINDOW_EVALUATIONS - 1
    assert f"fewer than {MIN_WINDOW_EVALUATIONS}" in entry["note"]
    assert comparison["checks"]["psi"]["verdict"] == comparison["checks"]["psi"]["live_training"]["verdict"]
    assert f"Not judged: {entry['note']}." in markdown(comparison)


def test_a_window_of_the_training_data_itself_has_no_drift(models: dict[str, Any]) -> None:
    comparison = compare(
        live=models["live"],
        candidate=models["candidate"],
        features=models["X"],
        window=models["X"][:MIN_WINDOW_EVALUATIONS],
    )
    window = comparison["checks"]["psi"]["live_window"]["features"]
    training = comparison["checks"]["psi"]["live_training"]["features"]
    # The same customers in the window as in the training data: far less PSI than against the real
    # population the live model was trained on.
    assert max(f["psi"] for f in window.values()) < PSI_MODERATE < max(f["psi"] for f in training.values())


def test_a_records_database_that_refuses_connections_is_a_fast_window_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(WindowError, match="cannot read the evaluations from the records database"):
        read_live_window(f"postgresql://gate@127.0.0.1:{port}/records", 5000)


def test_another_database_is_a_window_error_naming_the_forms() -> None:
    with pytest.raises(WindowError, match="must be sqlite:///PATH or postgresql://"):
        read_live_window("mysql://gate@127.0.0.1/records", 10)


def test_a_sqlite_file_without_records_is_a_window_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(WindowError, match="no such table: evaluations"):
        read_live_window(f"sqlite:///{empty}", 10)
