"""The local engine: every row in order, bad rows named, decisions equal to the per-request path, the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline

from contract import FEATURES
from decisioning.policy import Policy
from portfolio.batch import _NUMBER_RE, parse_figure
from portfolio.model import read_verified
from portfolio.score import score
from tests.portfolio.conftest import (
    CANDIDATE_POLICY,
    Portfolio,
    decide_row,
    read_output,
    reference,
    valid_figures,
)

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_COLUMNS = ["customer_id", "segment_id", "segment_key", "decision", "reasons", "model_version", "policy_version"]


@pytest.fixture(scope="module")
def csv_run(portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("local") / "decisions.csv"
    summary = score(input_path=str(portfolio.csv), output_path=str(out), candidate_path=CANDIDATE_POLICY)
    return out, summary


def test_one_row_per_input_row_in_order_with_ids(portfolio: Portfolio, csv_run: tuple[Path, dict[str, object]]) -> None:
    out = read_output(csv_run[0])
    assert list(out.columns) == [*OUTPUT_COLUMNS, "decision_b", "reasons_b"]
    assert out["customer_id"].tolist() == portfolio.frame["CUST_ID"].tolist()
    assert out["model_version"].unique().tolist() == [read_verified().version]
    assert out["policy_version"].unique().tolist() == ["2026-11-25.1"]


def test_bad_rows_are_invalid_and_name_column_and_rule(
    portfolio: Portfolio, csv_run: tuple[Path, dict[str, object]]
) -> None:
    out = read_output(csv_run[0])
    invalid = out.index[out["decision"] == "invalid"].tolist()
    assert sorted(invalid) == sorted(portfolio.expected_invalid)
    for row, reasons in portfolio.expected_invalid.items():
        assert out.loc[row, "reasons"] == reasons
        assert out.loc[row, "decision_b"] == "invalid" and out.loc[row, "reasons_b"] == reasons
        assert out.loc[row, "segment_id"] is None and out.loc[row, "segment_key"] is None


def test_decisions_are_the_per_request_ones(
    portfolio: Portfolio,
    csv_run: tuple[Path, dict[str, object]],
    pipeline: Pipeline,
    policy: Policy,
    candidate: Policy,
) -> None:
    """Row for row what the API decides: one model call and one `decide` per customer."""
    out = read_output(csv_run[0])
    figures = valid_figures(portfolio.frame, skip=set(portfolio.expected_invalid))
    rows = sorted(figures)[:600]  # a per-row predict costs ~1 ms: a sample is enough, the property test does the rest
    expected = reference(pipeline, policy, [figures[i] for i in rows])
    for i, (key, decision, reasons) in zip(rows, expected, strict=True):
        assert (out.loc[i, "segment_key"], out.loc[i, "decision"], out.loc[i, "reasons"]) == (key, decision, reasons)
        assert (out.loc[i, "decision_b"], out.loc[i, "reasons_b"]) == decide_row(candidate, figures[i], key)


def test_summary_and_swap_matrix(
    portfolio: Portfolio, csv_run: tuple[Path, dict[str, object]], policy: Policy, candidate: Policy
) -> None:
    out_path, summary = csv_run
    written = json.loads(Path(f"{out_path}.summary.json").read_text(encoding="utf-8"))
    assert written == summary
    out = read_output(out_path)
    n = len(portfolio.frame)
    assert summary["rows_total"] == n
    assert summary["rows_invalid"] == len(portfolio.expected_invalid)
    assert summary["by_decision"] == {
        d: int((out["decision"] == d).sum()) for d in ("approved", "review", "denied", "invalid")
    }
    by_segment = summary["by_segment_decision"]
    assert isinstance(by_segment, dict)
    for (key, decision), count in Counter(zip(out["segment_key"], out["decision"], strict=True)).items():
        if key is not None:
            assert by_segment[key][decision] == count
    assert summary["model_version"] == read_verified().version
    assert summary["policy_version"] == policy.version and summary["policy_version_b"] == candidate.version
    assert isinstance(summary["rows_per_s"], int) and summary["rows_per_s"] > 0
    swap = summary["swap"]
    assert isinstance(swap, dict)
    pairs = Counter(zip(out["decision"], out["decision_b"], strict=True))
    assert {(a, b): c for a, row in swap.items() for b, c in row.items() if c} == dict(pairs)
    # Per segment, from the output's rows; invalid rows have no segment and are in `swap` only.
    by_segment_swap = summary["swap_by_segment"]
    assert isinstance(by_segment_swap, dict) and list(by_segment_swap) == list(by_segment)
    triples = Counter(zip(out["segment_key"], out["decision"], out["decision_b"], strict=True))
    cells = {(key, a, b): c for key, m in by_segment_swap.items() for a, row in m.items() for b, c in row.items() if c}
    assert cells == {(key, a, b): c for (key, a, b), c in triples.items() if key is not None}
    assert sum(m["invalid"]["invalid"] for m in by_segment_swap.values()) == 0


def test_candidate_moves_the_known_customers(portfolio: Portfolio, csv_run: tuple[Path, dict[str, object]]) -> None:
    """The candidate denies cash advances above the limit (review before) and zero payers from R$ 10 (50
    before): exactly the customers those two changes reach move, and only toward denied."""
    out = read_output(csv_run[0])
    figures = valid_figures(portfolio.frame, skip=set(portfolio.expected_invalid))
    moved = set(out.index[(out["decision"] != out["decision_b"])].tolist())
    reached = {
        i
        for i, f in figures.items()
        if f["cash_advance"] > f["credit_limit"] or (f["payments"] == 0 and 10 < f["balance"] <= 50)
    }
    assert moved, "the fixture must move someone"
    assert moved <= reached
    assert set(out.loc[sorted(moved), "decision_b"]) == {"denied"}
    not_denied_before = {i for i in reached if out.loc[i, "decision"] != "denied"}
    assert moved == not_denied_before


def test_csv_and_parquet_inputs_and_outputs_agree(portfolio: Portfolio, tmp_path: Path) -> None:
    outputs = []
    for source, target in [(portfolio.csv, "a.csv"), (portfolio.csv, "b.parquet"), (portfolio.parquet, "c.parquet")]:
        score(input_path=str(source), output_path=str(tmp_path / target))
        outputs.append(read_output(tmp_path / target))
    for other in outputs[1:]:
        assert other.equals(outputs[0])


def test_api_names_numeric_parquet_and_no_id(tmp_path: Path, pipeline: Pipeline, policy: Policy) -> None:
    """snake_case columns, typed numbers (nulls, NaN, negatives among them), no id column, extra columns ignored."""
    rows: list[dict[str, float | None]] = [
        {"balance": 80.0, "purchases": 260.0, "cash_advance": 0.0, "credit_limit": 1800.0, "payments": 400.0},
        {"balance": 2000.0, "purchases": 0.0, "cash_advance": 2500.0, "credit_limit": 2000.0, "payments": 0.0},
        {"balance": None, "purchases": 1.0, "cash_advance": 0.0, "credit_limit": 1000.0, "payments": 1.0},
        {"balance": 1.0, "purchases": float("nan"), "cash_advance": 0.0, "credit_limit": 1000.0, "payments": 1.0},
        {"balance": 1.0, "purchases": 1.0, "cash_advance": -1.0, "credit_limit": 0.0, "payments": 1.0},
    ]
    table = pa.table({f.name: pa.array([r[f.name] for r in rows], pa.float64()) for f in FEATURES})
    table = table.append_column("TENURE", pa.array([12] * len(rows))).set_column(
        3, "credit_limit", pa.array([r["credit_limit"] for r in rows], pa.int64())
    )
    source = tmp_path / "api_names.parquet"
    pq.write_table(table, source)
    summary = score(input_path=str(source), output_path=str(tmp_path / "out.parquet"))
    out = read_output(tmp_path / "out.parquet")
    assert out["customer_id"].isna().all()
    assert out["reasons"].tolist()[2:] == ["balance:required", "purchases:finite", "cash_advance:ge;credit_limit:gt"]
    expected = reference(pipeline, policy, [{k: float(v or 0) for k, v in r.items()} for r in rows[:2]])
    assert [tuple(r) for r in out[["segment_key", "decision", "reasons"]].to_numpy()[:2]] == expected
    assert summary["rows_invalid"] == 3


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_progress_is_reported_up_to_every_row(portfolio: Portfolio, tmp_path: Path, kind: str) -> None:
    """Several batches (small CSV blocks and row groups), each reported with the total."""
    source = tmp_path / f"in.{kind}"
    if kind == "csv":
        source.write_text(portfolio.csv.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        pq.write_table(pq.read_table(portfolio.parquet), source, row_group_size=500)
    seen: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("portfolio.local_engine.CSV_BLOCK_BYTES", 32 << 10)
        patch.setattr("portfolio.local_engine.BATCH_ROWS", 500)
        score(input_path=str(source), output_path=str(tmp_path / "o.parquet"), on_progress=lambda *a: seen.append(a))
    done = [d for d, _ in seen]
    assert len(seen) > 3 and done == sorted(done)
    assert seen[-1] == (len(portfolio.frame), len(portfolio.frame))
    assert {t for _, t in seen} == {len(portfolio.frame)}


def test_real_sample_matches_the_per_request_path(
    real_sample: Path, tmp_path: Path, pipeline: Pipeline, policy: Policy
) -> None:
    out_path = tmp_path / "real.parquet"
    summary = score(input_path=str(real_sample), output_path=str(out_path))
    out = read_output(out_path)
    assert summary["rows_total"] == len(out) == 2000
    import pandas as pd

    frame = pd.read_csv(real_sample)
    assert out["customer_id"].tolist() == frame["CUST_ID"].tolist()
    complete = frame.dropna(subset=[f.csv_column for f in FEATURES])
    assert set(out.index[out["decision"] == "invalid"]) == set(frame.index) - set(complete.index)
    sample = complete.index[:300]
    figures = [{f.name: float(frame.loc[i, f.csv_column]) for f in FEATURES} for i in sample]
    for i, expected in zip(sample, reference(pipeline, policy, figures), strict=True):
        assert (out.loc[i, "segment_key"], out.loc[i, "decision"], out.loc[i, "reasons"]) == expected


@pytest.mark.parametrize(
    "text",
    ["1", "+3", ".5", "5.", "1e3", "1E+3", "inf", "-INF", "Infinity", "nan", "-nan", "nan(1)", "0005", "1.e1",
     " 5", "1,5", "0x10", "1_000", "12..5", "1e", "e5", ".", "+", "∞", "1d", "infin"],
)  # fmt: skip
def test_a_text_cell_parses_the_same_alone_or_beside_a_bad_one(text: str) -> None:
    """Arrow's fast cast and the slow path's pattern agree, so a value never depends on its neighbours."""
    alone = parse_figure(pa.array([text]), 0)
    beside_bad = parse_figure(pa.array([text, "not a number"]), 0)
    assert alone[1][0] == beside_bad[1][0]
    if alone[1][0] == 0:
        assert alone[0][0] == beside_bad[0][0]
    fast_ok = True
    try:
        pc.cast(pa.array([text.strip()]), pa.float64())
    except pa.ArrowInvalid:
        fast_ok = False
    assert fast_ok == pc.match_substring_regex(pa.array([text.strip()]), _NUMBER_RE)[0].as_py()


def test_arrow_allocates_with_jemalloc() -> None:
    """The package sets Arrow's allocator before pyarrow is imported (memory bounded by the batch, not
    the file: docs/ARCHITECTURE.md, "The local engine")."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    code = "import portfolio, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "jemalloc"
