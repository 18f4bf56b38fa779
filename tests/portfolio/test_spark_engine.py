"""The Spark engine (local[2]) gives the local engine's output, row for row, bad rows and the
explanation columns included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from portfolio.score import score
from tests.portfolio.conftest import CANDIDATE_POLICY, Portfolio, read_output

pytestmark = pytest.mark.slow


def _both(source: Path, tmp_path: Path, spark: Any, target: str, **kwargs: Any) -> tuple[Path, Path]:
    local, distributed = tmp_path / f"local_{target}", tmp_path / f"spark_{target}"
    score(input_path=str(source), output_path=str(local), **kwargs)
    score(input_path=str(source), output_path=str(distributed), engine="spark", spark_master="local[2]", **kwargs)
    return local, distributed


def test_csv_with_bad_rows_and_candidate_same_as_local(portfolio: Portfolio, tmp_path: Path, spark: Any) -> None:
    local, distributed = _both(
        portfolio.csv, tmp_path, spark, "out.parquet", candidate_path=CANDIDATE_POLICY, explain=True
    )
    assert distributed.is_dir() and len(list(distributed.glob("part-*"))) >= 1
    a, b = read_output(local), read_output(distributed)
    assert len(a) == len(portfolio.frame)
    assert a["counterfactual_feature"].notna().sum() == len(a) - len(portfolio.expected_invalid)
    assert a.equals(b)
    summary_a = json.loads(Path(f"{local}.summary.json").read_text(encoding="utf-8"))
    summary_b = json.loads(Path(f"{distributed}.summary.json").read_text(encoding="utf-8"))
    summary_a.pop("rows_per_s"), summary_b.pop("rows_per_s")
    assert summary_a == summary_b


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_several_partitions_keep_the_order(portfolio: Portfolio, tmp_path: Path, spark: Any, kind: str) -> None:
    """Small splits (and row groups), so Spark reads the file in many partitions: the order must survive."""
    source = portfolio.csv
    if kind == "parquet":
        source = tmp_path / "small_row_groups.parquet"
        pq.write_table(pq.read_table(portfolio.parquet), source, row_group_size=300)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "32k")
    try:
        assert spark.read.format(kind).option("header", True).load(str(source)).rdd.getNumPartitions() > 1
        local, distributed = _both(source, tmp_path, spark, "out.csv")
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert read_output(local).equals(read_output(distributed))


def test_real_sample_same_as_local(real_sample: Path, tmp_path: Path, spark: Any) -> None:
    local, distributed = _both(real_sample, tmp_path, spark, "out.parquet", explain=True)
    assert read_output(local).equals(read_output(distributed))


def test_missing_column_is_a_plain_error(tmp_path: Path, spark: Any) -> None:
    source = tmp_path / "in.csv"
    source.write_text("BALANCE,PURCHASES\n1,2\n", encoding="utf-8")
    from portfolio.batch import InputError

    with pytest.raises(InputError, match=r"missing columns: CASH_ADVANCE \(or cash_advance\)"):
        score(input_path=str(source), output_path=str(tmp_path / "o.parquet"), engine="spark", spark_master="local[2]")
