"""Portfolio runs requested through the API: their table, the queue that hands them to the worker, and
the cheap checks the API makes on an upload.

The API never scores: it stores the upload under the run directory, adds a row (`queued`) and puts the
run's id on a huey queue. The worker (`python -m portfolio.worker`, a separate process with the numeric
stack) takes it, updates the row as it goes and writes the results beside the upload. Nothing here
imports the portfolio package, numpy or pyarrow.
"""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from huey import SqliteHuey
from huey.api import TaskWrapper
from sqlalchemy import JSON, BigInteger, DateTime, Engine, ForeignKey, Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from contract import FEATURES
from evaluation_api.audit import trail as audit
from evaluation_api.config import Settings
from evaluation_api.database import Base

Status = Literal["queued", "running", "succeeded", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed")
FINISHED: tuple[Status, ...] = ("succeeded", "failed")

INPUT_CSV = "input.csv"
INPUT_PARQUET = "input.parquet"
CANDIDATE = "candidate_policy.yaml"
RESULT_CSV = "result.csv"
RESULT_PARQUET = "result.parquet"
PARQUET_MAGIC = b"PAR1"
QUEUE_FILE = "queue.db"
TASK_NAME = "portfolio.run"


class PortfolioRunRow(Base):
    __tablename__ = "portfolio_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    rows_done: Mapped[int] = mapped_column(Integer)
    rows_total: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(String(255))
    input_path: Mapped[str] = mapped_column(String(1024))
    candidate_path: Mapped[str | None] = mapped_column(String(1024))
    # A backtest: the challenger whose policy version is policy B (migrations/versions/0010_*.py).
    challenger_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("challengers.id"), index=True
    )
    result_dir: Mapped[str] = mapped_column(String(1024))
    created_by: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))


def now() -> datetime:
    return datetime.now(UTC)


# --- the queue -----------------------------------------------------------------------------------------


# What executes a run: set by the worker at its start (portfolio/worker.py), never in the API's
# processes. The worker owns the task's body; this package never imports the portfolio package.
_executor: Callable[[str], None] | None = None


def execute_runs_with(executor: Callable[[str], None]) -> None:
    global _executor
    _executor = executor


def run_portfolio(run_id: str) -> None:
    """The task both sides register under one name (huey keys tasks by module and name): the API
    enqueues it, the worker runs it with the executor it set."""
    if _executor is None:
        raise RuntimeError("portfolio runs are executed by the worker: python -m portfolio.worker")
    _executor(run_id)


@dataclass(frozen=True)
class Queue:
    huey: SqliteHuey
    task: TaskWrapper

    def enqueue(self, run_id: str) -> None:
        self.task(run_id)


@lru_cache(maxsize=8)
def queue_for(run_dir: Path) -> Queue:
    """The huey queue under `run_dir` (SQLite, shared by the API and the worker on one file system).
    Made on first use, not at import: huey opens its file when it is made."""
    run_dir.mkdir(parents=True, exist_ok=True)
    huey = SqliteHuey("portfolio", filename=str(run_dir / QUEUE_FILE), results=False, journal_mode="wal")
    return Queue(huey, huey.task(name=TASK_NAME)(run_portfolio))


# --- the upload's cheap checks -------------------------------------------------------------------------


class NotATable(ValueError):
    """The upload is not a CSV with the five figures (or a Parquet file): the message says why, in pt-BR."""


HEADER_BYTES = 64 * 1024


def input_kind(head: bytes) -> Literal["csv", "parquet"]:
    """From the file's first bytes: Parquet by its magic number, else a CSV whose header names the five
    figures, in either spelling (`balance` or `BALANCE`). The worker checks every row."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if not head.strip():
        raise NotATable("O arquivo está vazio.")
    if b"\0" in head:
        raise NotATable("O arquivo não é uma tabela CSV (conteúdo binário).")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end of the sample is fine
            raise NotATable("O arquivo não é um CSV em UTF-8.") from None
        text = head[: exc.start].decode("utf-8-sig")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    try:
        header = [c.strip() for c in next(csv.reader(io.StringIO(first_line)))]
    except (csv.Error, StopIteration):
        raise NotATable("A primeira linha do arquivo não é um cabeçalho CSV.") from None
    missing = [f.csv_column for f in FEATURES if f.name not in header and f.csv_column not in header]
    if missing:
        raise NotATable(
            f"O cabeçalho não tem as colunas {', '.join(missing)} "
            f"(aceitas: {', '.join(f.csv_column for f in FEATURES)} ou {', '.join(f.name for f in FEATURES)})."
        )
    return "csv"


# --- the rows ------------------------------------------------------------------------------------------


def new_run_dir(settings: Settings, run_id: str) -> Path:
    directory = settings.portfolio_run_dir / run_id
    directory.mkdir(parents=True, exist_ok=False)
    return directory


def create(
    engine: Engine,
    *,
    run_id: str,
    created_by: str,
    file_name: str,
    input_path: Path,
    candidate_path: Path | None,
    result_dir: Path,
    challenger_id: int | None = None,
    events: Sequence[dict[str, Any]] = (),
) -> None:
    """The run's row, `queued`, with its audit events in the same transaction."""
    stamp = now()
    with engine.begin() as connection:
        connection.execute(
            insert(PortfolioRunRow).values(
                id=run_id,
                status="queued",
                rows_done=0,
                rows_total=None,
                file_name=file_name[:255],
                input_path=str(input_path),
                candidate_path=str(candidate_path) if candidate_path else None,
                challenger_id=challenger_id,
                result_dir=str(result_dir),
                created_by=created_by,
                created_at=stamp,
                updated_at=stamp,
            )
        )
        audit.append(connection, *events)


def new_id() -> str:
    return str(uuid.uuid4())


def get(engine: Engine, run_id: str) -> PortfolioRunRow | None:
    with engine.connect() as connection:
        row = connection.execute(select(PortfolioRunRow).where(PortfolioRunRow.id == run_id)).first()
    return PortfolioRunRow(**row._mapping) if row is not None else None


def list_runs(engine: Engine, *, created_by: str | None, limit: int, offset: int) -> list[PortfolioRunRow]:
    query = select(PortfolioRunRow).order_by(PortfolioRunRow.created_at.desc()).limit(limit).offset(offset)
    if created_by is not None:
        query = query.where(PortfolioRunRow.created_by == created_by)
    with engine.connect() as connection:
        return [PortfolioRunRow(**row._mapping) for row in connection.execute(query)]


def _set(engine: Engine, run_id: str, *, only_if: Sequence[str], **values: Any) -> bool:
    statement = (
        update(PortfolioRunRow)
        .where(PortfolioRunRow.id == run_id, PortfolioRunRow.status.in_(list(only_if)))
        .values(updated_at=now(), **values)
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


def start(engine: Engine, run_id: str, *, worker: str) -> bool:
    """queued → running; False if the run is not queued (taken already, or failed by recovery)."""
    return _set(engine, run_id, only_if=("queued",), status="running", started_at=now(), worker=worker)


def progress(engine: Engine, run_id: str, *, rows_done: int, rows_total: int) -> None:
    _set(engine, run_id, only_if=("running",), rows_done=rows_done, rows_total=rows_total)


def succeed(engine: Engine, run_id: str, summary: dict[str, Any]) -> None:
    rows = int(summary["rows_total"])
    _set(
        engine,
        run_id,
        only_if=("running",),
        status="succeeded",
        summary=summary,
        rows_done=rows,
        rows_total=rows,
        finished_at=now(),
    )


def fail(engine: Engine, run_id: str, message: str) -> None:
    _set(engine, run_id, only_if=("queued", "running"), status="failed", error=message[:4000], finished_at=now())


INTERRUPTED = "A execução foi interrompida (o processo de cálculo parou). Envie o arquivo novamente."


def recover(engine: Engine, *, host: str | None, stale_after_s: int) -> list[str]:
    """Fail the runs a crash left `running`: those a worker on `host` had (one worker per host: it is
    starting again, so they are not running), and those nobody updated for `stale_after_s` (a worker
    elsewhere died)."""
    stale = now() - timedelta(seconds=stale_after_s)
    orphaned = PortfolioRunRow.updated_at < stale
    if host is not None:
        orphaned = orphaned | PortfolioRunRow.worker.startswith(f"{host}:", autoescape=True)
    query = select(PortfolioRunRow.id).where(PortfolioRunRow.status == "running", orphaned)
    with engine.connect() as connection:
        ids = [row.id for row in connection.execute(query)]
    for run_id in ids:
        fail(engine, run_id, INTERRUPTED)
    return ids


def purge(engine: Engine, run_dir: Path, *, older_than_days: int) -> list[str]:
    """Remove the files of finished runs older than the retention (uploads are personal data); the row
    stays, with its summary (counts only), marked by an empty `input_path`."""
    cutoff = now() - timedelta(days=older_than_days)
    query = select(PortfolioRunRow.id, PortfolioRunRow.result_dir).where(
        PortfolioRunRow.created_at < cutoff,
        PortfolioRunRow.status.in_(list(FINISHED)),
        PortfolioRunRow.input_path != "",
    )
    with engine.connect() as connection:
        found = [(row.id, Path(row.result_dir)) for row in connection.execute(query)]
    removed = []
    for run_id, directory in found:
        if directory.resolve().parent == run_dir.resolve():  # never outside the run directory
            shutil.rmtree(directory, ignore_errors=True)
        with engine.begin() as connection:
            connection.execute(
                update(PortfolioRunRow).where(PortfolioRunRow.id == run_id).values(input_path="", candidate_path=None)
            )
        removed.append(run_id)
    return removed
