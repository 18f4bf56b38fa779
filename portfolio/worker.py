"""The worker that runs the portfolio runs the API queues: a huey consumer, a process of its own.

    python -m portfolio.worker                   # consume the queue (what `make run` supervises)
    python -m portfolio.worker purge [--days N]  # remove uploads and results older than the retention

It uses the evaluation API's settings (DATABASE_URL, PORTFOLIO_RUN_DIR, ...): the same database and
run directory; the API migrates the database, the worker waits for it. At start it fails the runs a
crash left `running` (evaluation_api.portfolio_runs.store.recover), and every minute those nobody updated
for PORTFOLIO_STALE_AFTER_S. Once a day (03:30, the host's time) it removes the files of runs older
than PORTFOLIO_RETENTION_DAYS, as `purge` does: wherever a worker runs (make run, Compose,
Kubernetes), the uploads' retention runs too.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from huey import Huey, crontab
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from decisioning.policy import Policy, PolicyError, parse_policy
from evaluation_api.config import Settings, get_settings
from evaluation_api.database import make_engine
from evaluation_api.portfolio_runs import store as runs
from evaluation_api.releases import registry as releases
from portfolio.batch import PortfolioError
from portfolio.score import score

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_engines: dict[str, Engine] = {}


def engine_for(settings: Settings) -> Engine:
    """One engine per database per worker process (tasks run in the consumer's threads)."""
    if settings.database_url not in _engines:
        _engines[settings.database_url] = make_engine(settings.database_url, pool_size=2)
    return _engines[settings.database_url]


class Progress:
    """score()'s progress callback, written to the run's row at most every `interval_s`."""

    def __init__(self, engine: Engine, run_id: str, interval_s: float) -> None:
        self.engine, self.run_id, self.interval_s = engine, run_id, interval_s
        self.last = 0.0

    def __call__(self, rows_done: int, rows_total: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last = now
            runs.progress(self.engine, self.run_id, rows_done=rows_done, rows_total=max(rows_total, rows_done))


def parquet_to_csv(parquet_path: Path, csv_path: Path) -> None:
    """The CSV download, from the Parquet result batch by batch (bounded memory), written as the
    engine writes its CSV output; renamed into place when complete."""
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    source = pq.ParquetFile(parquet_path)
    with pacsv.CSVWriter(tmp, source.schema_arrow) as writer:
        for batch in source.iter_batches():
            writer.write_batch(batch)
    tmp.replace(csv_path)


def execute(settings: Settings, run_id: str) -> None:
    """Score one run: queued → running → succeeded (summary, both result files) or failed (the message)."""
    engine = engine_for(settings)
    if not runs.start(engine, run_id, worker=worker_name()):
        logger.warning("portfolio run %s is not queued any more: skipped", run_id)
        return
    run = runs.get(engine, run_id)
    assert run is not None
    result_dir = Path(run.result_dir)
    try:
        # The policy live now, as the API's evaluations use it, never the packaged file: a promotion
        # applies to portfolio runs too.
        live = _live_policy(engine, settings)
        summary = score(
            input_path=run.input_path,
            policy=live,
            output_path=str(result_dir / runs.RESULT_PARQUET),
            candidate_path=Path(run.candidate_path) if run.candidate_path else None,
            candidate_policy=_challenger_policy(engine, run.challenger_id) if run.challenger_id else None,
            on_progress=Progress(engine, run_id, settings.portfolio_progress_interval_s),
            explain=settings.portfolio_explain,
        )
        parquet_to_csv(result_dir / runs.RESULT_PARQUET, result_dir / runs.RESULT_CSV)
    except PortfolioError as exc:
        logger.info("portfolio run %s failed: %s", run_id, exc)
        runs.fail(engine, run_id, str(exc))
        return
    except Exception:
        logger.exception("portfolio run %s failed unexpectedly", run_id)
        runs.fail(engine, run_id, "Erro interno ao processar a carteira. A equipe técnica foi avisada pelo log.")
        return
    runs.succeed(engine, run_id, summary)
    logger.info("portfolio run %s succeeded: %s rows", run_id, summary["rows_total"])


def _live_policy(engine: Engine, settings: Settings) -> Policy:
    try:
        return releases.state(engine).live.policy
    except LookupError:  # no API has started on this database yet: its first start would seed the same
        releases.seed(engine, settings.policy_path.read_text(encoding="utf-8"), source=str(settings.policy_path))
        return releases.state(engine).live.policy


def _challenger_policy(engine: Engine, challenger_id: int) -> Policy:
    """A backtest's policy B: the challenger's policy version as registered (its text never changes, so a
    challenger stopped after the upload still decides the run it was named in)."""
    found = releases.challenger_policy(engine, challenger_id)
    if found is None or found.text is None:
        raise PortfolioError(f"O desafiante {challenger_id} não tem uma versão de política para o backtest.")
    try:
        return parse_policy(found.text, source=f"policy version {found.policy_version_id}")
    except PolicyError as exc:
        raise PortfolioError(f"policy version {found.policy_version_id} refused: {exc}") from exc


STARTUP_WAIT_S = 120


def _recover_at_start(engine: Engine, settings: Settings) -> list[str]:
    """The API owns the migrations (it runs them at start, as the accounts command does): wait for
    the table rather than race it."""
    deadline = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            return runs.recover(engine, host=socket.gethostname(), stale_after_s=settings.portfolio_stale_after_s)
        except SQLAlchemyError as exc:
            if time.monotonic() > deadline:
                raise
            logger.info("waiting for the database and its portfolio_runs table: %s", type(exc).__name__)
            time.sleep(2)


def purge(engine: Engine, settings: Settings, days: int | None = None) -> list[str]:
    """Remove the files of finished runs older than the retention (PORTFOLIO_RETENTION_DAYS)."""
    days = days if days is not None else settings.portfolio_retention_days
    removed = runs.purge(engine, settings.portfolio_run_dir, older_than_days=days)
    logger.info("removed the files of %d run(s) older than %d days", len(removed), days)
    return removed


def schedule(huey: Huey, engine: Engine, settings: Settings) -> dict[str, Any]:
    """The consumer's periodic tasks: stale runs failed every minute, the retention once a day."""

    @huey.periodic_task(crontab(minute="*"), name="portfolio.recover")  # type: ignore[untyped-decorator]
    def recover_stale() -> None:
        stale = runs.recover(engine, host=None, stale_after_s=settings.portfolio_stale_after_s)
        if stale:
            logger.warning("failed %d stale run(s): %s", len(stale), ", ".join(stale))

    @huey.periodic_task(crontab(hour="3", minute="30"), name="portfolio.purge")  # type: ignore[untyped-decorator]
    def purge_old() -> None:
        purge(engine, settings)

    return {"recover": recover_stale, "purge": purge_old}


def consume(settings: Settings, *, workers: int) -> None:
    engine = engine_for(settings)
    name = worker_name()
    failed = _recover_at_start(engine, settings)
    if failed:
        logger.warning("failed %d run(s) a stopped worker left running: %s", len(failed), ", ".join(failed))
    runs.execute_runs_with(lambda run_id: execute(settings, run_id))  # the task's body is this worker's
    queue = runs.queue_for(settings.portfolio_run_dir)
    schedule(queue.huey, engine, settings)
    logger.info("portfolio worker %s consuming %s", name, settings.portfolio_run_dir / runs.QUEUE_FILE)
    queue.huey.create_consumer(workers=workers, worker_type="thread", check_worker_health=True).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portfolio.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="runs at once (each uses every core)")
    commands = parser.add_subparsers(dest="command")
    purge_command = commands.add_parser("purge", help="remove the files of runs older than PORTFOLIO_RETENTION_DAYS")
    purge_command.add_argument("--days", type=int, default=None, help="override PORTFOLIO_RETENTION_DAYS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    if args.command == "purge":
        purge(engine_for(settings), settings, args.days)
        return 0
    consume(settings, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
