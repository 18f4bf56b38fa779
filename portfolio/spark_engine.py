"""The Spark engine: the same scoring (portfolio/batch.py) inside a Spark job, for portfolios that
outgrow one machine.

- Input: any path Spark reads (local, s3a://, hdfs://), CSV with a header (every column read as text,
  parsed by the same code as the local engine) or Parquet.
- The model: the driver reads the pickle and checks it against its model card; the verified bytes are
  broadcast; each Python worker checks them again and reads the model once (load_segmenter), then keeps the scorer for
  every later task (Spark reuses its Python workers).
- Arrow all the way: `mapInArrow` hands the worker Arrow record batches and takes Arrow back; no
  pandas on the path.
- Order: each row carries its place in the input (file, block offset, position); the rows are sorted
  by it before scoring, so the part files Spark writes, read in name order, are in input order.
- Output: Spark's layout, a directory of part files at OUTPUT; the summary beside it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from decisioning.policy import Policy
from portfolio.batch import (
    OUTCOMES,
    SEGMENT_KEYS,
    TALLY_SHAPE,
    Columns,
    InputError,
    PortfolioError,
    Scorer,
    output_schema,
    plain_schema,
    resolve_columns,
)
from portfolio.model import VerifiedModel, load_geometry, load_segmenter
from portfolio.summary import Tally, write_summary

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Rows per Arrow batch handed to a Python worker (Spark's default, 10,000, makes the per-call costs show).
ARROW_BATCH_ROWS = 100_000
_ORDER = ("_portfolio_file", "_portfolio_block", "_portfolio_row")

# Per Python worker: the scorer for a given model and policies, built on the first task that needs it.
_SCORERS: dict[tuple[str, str, str | None, Columns, bool], Scorer] = {}


@contextmanager
def _no_pandas_warning() -> Iterator[None]:
    """PySpark 4 warns that it "does not yet fully support pandas >= 3" whenever it checks pandas's
    version, mapInArrow included, which never uses pandas. The model service pins pandas 3 in the same
    environment; nothing on this engine's path touches pandas, so that one warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield


def spark_session(master: str | None = None) -> Any:
    """The active SparkSession, or a new one. Workers run this venv's Python with the project importable."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_DIR) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_DIR), *paths])
    if (master or "local").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # one machine: nothing listens beyond it
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("portfolio-score")
    if master:  # otherwise spark-submit's --master, or local[*]
        builder = builder.master(master)
    with _no_pandas_warning():
        return (
            builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )


def _scorer(model: Any, policy: Policy, candidate: Policy | None, columns: Columns, explain: bool) -> Scorer:
    verified: VerifiedModel = model.value
    key = (
        verified.sha256,
        policy.model_dump_json(),
        candidate.model_dump_json() if candidate else None,
        columns,
        explain,
    )
    scorer = _SCORERS.get(key)
    if scorer is None:
        scorer = Scorer(
            model=load_segmenter(verified),
            model_version=verified.version,
            policy=policy,
            candidate=candidate,
            columns=columns,
            geometry=load_geometry(verified) if explain else None,
        )
        _SCORERS[key] = scorer
    return scorer


def _read(spark: Any, path: str) -> Any:
    kind = path.rstrip("/").rsplit(".", 1)[-1].lower()
    from pyspark.errors import AnalysisException

    try:
        if kind == "csv":
            # No schema inference: every column is text, parsed by the scorer exactly as locally.
            return spark.read.option("header", True).csv(path)
        if kind in ("parquet", "pq"):
            return spark.read.parquet(path)
    except AnalysisException as exc:
        raise InputError(f"{path}: cannot be read ({exc.getMessage() if hasattr(exc, 'getMessage') else exc})") from exc
    raise InputError(f"{path}: unknown format (the name must end in .csv or .parquet)")


def run_spark(
    *,
    input_path: str,
    output_path: str,
    model: VerifiedModel,
    policy: Policy,
    candidate: Policy | None,
    master: str | None = None,
    explain: bool = False,
) -> tuple[Tally, float]:
    """Score `input_path` into `output_path` (a directory of part files); return the tally and the job's
    wall time (s), without the session's start."""
    from pyspark.sql import functions as F
    from threadpoolctl import threadpool_limits

    kind = output_path.rstrip("/").rsplit(".", 1)[-1].lower()
    if kind not in ("csv", "parquet"):
        raise PortfolioError(f"{output_path}: unknown output format (the name must end in .csv or .parquet)")
    spark = spark_session(master)
    started = time.perf_counter()
    df = _read(spark, input_path)
    columns = resolve_columns(df.columns)
    located = df.select(
        F.col("_metadata.file_path").alias(_ORDER[0]),
        F.col("_metadata.file_block_start").alias(_ORDER[1]),
        F.monotonically_increasing_id().alias(_ORDER[2]),
        *[F.col(f"`{c}`") for c in columns.to_read],
    ).orderBy(*_ORDER)

    schema = plain_schema(output_schema(candidate=candidate is not None, explain=explain))
    broadcast = spark.sparkContext.broadcast(model)

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = _scorer(broadcast, policy, candidate, columns, explain)
        with threadpool_limits(limits=1):  # one core per task: Spark runs one task per core
            for batch in batches:
                out, _ = scorer.score(batch)
                yield out.cast(schema)

    from pyspark.sql.pandas.types import from_arrow_schema

    with _no_pandas_warning():
        scored = located.mapInArrow(score_partition, from_arrow_schema(schema))
        writer = scored.write.mode("overwrite")
        if kind == "csv":
            writer.option("header", True).csv(output_path)
        else:
            writer.parquet(output_path)
    tally = _tally(spark, output_path, kind, candidate=candidate is not None)
    return tally, time.perf_counter() - started


def _tally(spark: Any, output_path: str, kind: str, *, candidate: bool) -> Tally:
    """Count the written output's decisions (a columnar read of three columns, not a second scoring)."""
    reader = spark.read.option("header", True) if kind == "csv" else spark.read
    written = reader.format(kind).load(output_path)
    keys = ["segment_key", "decision", "decision_b" if candidate else "decision"]
    counts = np.zeros(TALLY_SHAPE, np.int64)
    for row in written.groupBy(*dict.fromkeys(keys)).count().collect():
        segment = SEGMENT_KEYS.index(row["segment_key"]) if row["segment_key"] is not None else len(SEGMENT_KEYS)
        a = OUTCOMES.index(row["decision"])
        b = OUTCOMES.index(row[keys[2]])
        counts[segment, a, b] += row["count"]
    return Tally(counts)


def write_text(path: str, summary: dict[str, Any]) -> None:
    """Write the summary beside the output: a local file, or through Hadoop's file systems (s3a, hdfs)."""
    if "://" not in path or path.startswith("file://"):
        write_summary(Path(path.removeprefix("file://")), summary)
        return
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise PortfolioError("no Spark session to write the summary with")
    jvm: Any = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    stream = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(target, True)
    try:
        stream.write(bytearray(json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8")))
    finally:
        stream.close()
