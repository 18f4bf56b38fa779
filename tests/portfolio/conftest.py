"""Fixtures for portfolio runs: a generated portfolio with deliberate bad rows, a sample of the real
data (when it is there), the per-request reference (the API's `decide` on the model's segment), and
one SparkSession for every Spark test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline

from contract import FEATURES, SEGMENTS
from decisioning.policy import Policy, decide, load_policy
from tests.utils import artifacts
from tests.utils.artifacts import REAL_DATA
from tests.utils.data import cc_general_frame

HERE = Path(__file__).resolve().parent
CANDIDATE_POLICY = HERE / "candidate_policy.yaml"
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "decisioning" / "policy.yaml"
SEGMENT_KEY = {s.id: s.key for s in SEGMENTS}
CSV_NAMES = [f.csv_column for f in FEATURES]

# (column, cell text, the reason the row must get). Each goes into its own row of the generated file.
BAD_CELLS: tuple[tuple[str, str, str], ...] = (
    ("BALANCE", "", "BALANCE:required"),
    ("PURCHASES", "abc", "PURCHASES:number"),
    ("CASH_ADVANCE", "-5", "CASH_ADVANCE:ge"),
    ("CREDIT_LIMIT", "0", "CREDIT_LIMIT:gt"),
    ("CREDIT_LIMIT", "-0.0", "CREDIT_LIMIT:gt"),
    ("PAYMENTS", "nan", "PAYMENTS:finite"),
    ("BALANCE", "inf", "BALANCE:finite"),
    ("PURCHASES", "-Infinity", "PURCHASES:finite"),
    ("PAYMENTS", "100000000", "PAYMENTS:lt"),
    ("CASH_ADVANCE", "1,5", "CASH_ADVANCE:number"),
    ("BALANCE", "12..5", "BALANCE:number"),
    ("PURCHASES", "R$ 10", "PURCHASES:number"),
)
# Cells that look odd but are numbers: their rows are scored normally.
ODD_GOOD_CELLS: tuple[tuple[str, str, float], ...] = (
    ("BALANCE", " 12.5 ", 12.5),
    ("PURCHASES", "+3", 3.0),
    ("PAYMENTS", "1e3", 1000.0),
    ("CASH_ADVANCE", ".5", 0.5),
)


@dataclass(frozen=True)
class Portfolio:
    frame: pd.DataFrame  # as written: text cells, CUST_ID and the 13 other cc_general columns
    expected_invalid: dict[int, str]  # row -> reasons
    csv: Path
    parquet: Path  # the same table, text columns


def _portfolio(directory: Path, *, n: int, seed: int) -> Portfolio:
    frame = cc_general_frame(n=n, seed=seed).drop(columns=["PROFILE"])
    frame[CSV_NAMES] = frame[CSV_NAMES].map(repr)  # text cells, so bad ones can be written beside them
    expected: dict[int, str] = {}
    rng = np.random.default_rng(seed)
    rows = rng.choice(n, size=len(BAD_CELLS) + len(ODD_GOOD_CELLS) + 1, replace=False)
    for row, (column, text, reason) in zip(rows, BAD_CELLS, strict=False):
        frame.loc[row, column] = text
        expected[int(row)] = reason
    two_bad = int(rows[len(BAD_CELLS)])  # one row with two bad cells: both named, in the contract's order
    frame.loc[two_bad, "PAYMENTS"] = "-1"
    frame.loc[two_bad, "BALANCE"] = "x"
    expected[two_bad] = "BALANCE:number;PAYMENTS:ge"
    for row, (column, text, _) in zip(rows[len(BAD_CELLS) + 1 :], ODD_GOOD_CELLS, strict=True):
        frame.loc[row, column] = text
    frame.loc[int(rows[0]), "CUST_ID"] = "C-with,comma"  # ids are carried through exactly
    csv = directory / "portfolio.csv"
    frame.to_csv(csv, index=False)
    table = pacsv.read_csv(
        csv,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(["CUST_ID", *CSV_NAMES], pa.string()), null_values=[""], strings_can_be_null=True
        ),
    )
    parquet = directory / "portfolio.parquet"
    pq.write_table(table, parquet)
    return Portfolio(frame=frame, expected_invalid=expected, csv=csv, parquet=parquet)


@pytest.fixture(scope="session")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Portfolio:
    return _portfolio(tmp_path_factory.mktemp("portfolio"), n=3000, seed=11)


@pytest.fixture(scope="session")
def real_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 rows of the real cc_general.csv, as it is (its own missing values included)."""
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public dataset is not committed)")
    path = tmp_path_factory.mktemp("real") / "cc_general_sample.csv"
    with REAL_DATA.open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i > 2000:
                break
            dst.write(line)
    return path


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    return artifacts.committed_pipeline()


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


@pytest.fixture(scope="session")
def candidate() -> Policy:
    return load_policy(CANDIDATE_POLICY)


def decide_row(policy: Policy, figures: dict[str, float], segment_key: str) -> tuple[str, str]:
    """The evaluation API's per-request decision, as (decision, reasons joined by ';')."""
    outcome = decide(policy, figures, segment_key)
    return outcome.decision, ";".join(r.code for r in outcome.reasons)


def reference(pipeline: Pipeline, policy: Policy, rows: list[dict[str, float]]) -> list[tuple[str, str, str]]:
    """(segment_key, decision, reasons) for valid rows, one model call per row as the API does."""
    out = []
    for figures in rows:
        segment = int(pipeline.predict(np.array([[figures[f.name] for f in FEATURES]]))[0])
        key = SEGMENT_KEY[segment]
        out.append((key, *decide_row(policy, figures, key)))
    return out


def valid_figures(frame: pd.DataFrame, skip: set[int]) -> dict[int, dict[str, float]]:
    return {
        i: {f.name: float(str(row[f.csv_column]).strip()) for f in FEATURES}
        for i, row in enumerate(frame.to_dict("records"))
        if i not in skip
    }


def read_output(path: Path) -> pd.DataFrame:
    """A local file or a Spark output directory (part files in name order), as plain text and numbers."""
    files = sorted(path.glob("part-*")) if path.is_dir() else [path]
    tables = []
    for file in files:
        if file.suffix == ".csv" or ".csv" in file.name:
            tables.append(
                pacsv.read_csv(
                    file,
                    convert_options=pacsv.ConvertOptions(
                        column_types={"customer_id": pa.string(), "segment_id": pa.int32()},
                        strings_can_be_null=True,
                        null_values=[""],
                    ),
                )
            )
        else:
            tables.append(pq.read_table(file))
    table = pa.concat_tables([t.cast(tables[0].schema) for t in tables]) if tables else pa.table({})
    # Python objects (None for null), so two outputs compare cell by cell whatever their Arrow types.
    plain = table.cast(
        pa.schema([pa.field(f.name, pa.string() if f.name != "segment_id" else pa.int32()) for f in table.schema])
    )
    return pd.DataFrame(plain.to_pydict(), dtype=object)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession for every Spark test (starting one takes several seconds)."""
    from portfolio.spark_engine import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()
