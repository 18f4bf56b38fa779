"""The local engine: a file of customers streamed through the model and the policy on this machine.

Arrow record batches are read one after another (CSV: pyarrow's streaming reader; Parquet: one row
group's batches at a time), scored on a pool of threads (numpy and Arrow's kernels release the GIL,
so threads use every core without copying batches between processes) and written in input order by
one writer thread, so reading, scoring and writing overlap. At most `workers` + 1 batches are read
and not yet written, whatever the file's size.
The output and its summary are written to temporary names and renamed at the end: a run that fails
leaves no half-written file behind.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from portfolio.batch import TALLY_SHAPE, Columns, InputError, PortfolioError, Scorer, plain_schema, resolve_columns
from portfolio.summary import Tally

# Rows per batch: large enough that per-batch costs (one predict call, the Python around it) vanish,
# small enough that a few batches in flight stay a few tens of MB.
BATCH_ROWS = 1 << 18
CSV_BLOCK_BYTES = 4 << 20
# Columns of (nearly) unique values: a Parquet dictionary for them would only cost the writer time.
_NOT_DICTIONARY = frozenset({"customer_id", "counterfactual_value"})

# Called after each batch is written with (rows_done, rows_total): rows_total is exact for Parquet (its
# metadata) and an estimate for CSV (its line count, read before the run), corrected at the end.
ProgressCallback = Callable[[int, int], None]


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(f"{path}: unknown format (the file name must end in .csv or .parquet)")


@dataclass
class Source:
    columns: Columns
    batches: Iterator[pa.RecordBatch]
    rows_total: int  # exact for Parquet, estimated for CSV (see estimate_csv_rows)


def _csv_header(path: Path) -> list[str]:
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({exc})") from exc


def open_source(path: Path) -> Source:
    """Open the input and find its columns; raise InputError with a plain message if it is unusable."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    kind = file_format(path)
    if kind == "parquet":
        try:
            # pre_buffer off: with it, the reader keeps every column chunk it has fetched until the file
            # is closed, so memory grew with the file (about 120 MiB more at 10,000,000 rows).
            parquet = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        columns = resolve_columns(parquet.schema_arrow.names)
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns.to_read, use_threads=True)
        return Source(columns, batches, parquet.metadata.num_rows)
    columns = resolve_columns(_csv_header(path))
    # Figures as text: a cell that is not a number must make its row `invalid`, not stop the file.
    # Empty cells are missing (null), as Spark's CSV reader has them.
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns.to_read,
            column_types=dict.fromkeys(columns.to_read, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    return Source(columns, _csv_batches(path, reader), estimate_csv_rows(path))


def estimate_csv_rows(path: Path) -> int:
    """Lines after the header: exact unless a quoted cell holds a line break. Reading 250 MB this way
    takes a fraction of a second, against several seconds to parse it."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(0, lines + (last != b"\n") - 1)


def _csv_batches(path: Path, reader: Any) -> Iterator[pa.RecordBatch]:
    with reader:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:  # a row with too many or too few fields, bad quoting, ...
                raise InputError(f"{path}: {exc}") from exc
            yield batch


class _Sink:
    """Writes batches to a temporary file beside the output; `commit` renames it into place."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self.kind = file_format(path)
        if self.kind == "parquet":
            # store_schema=False: readers see plain strings, not pandas categoricals. Dictionary encoding
            # for the text columns, which already are Arrow dictionaries (few distinct values), not for
            # the unique customer ids. Statistics (min/max per row group) only on segment_id: every row
            # group holds nearly every decision and reason, so theirs would never let a reader skip
            # one, and computing them over strings was about half of the write's CPU.
            self.writer: Any = pq.ParquetWriter(
                self.tmp,
                schema,
                compression="snappy",
                store_schema=False,
                use_dictionary=[name for name in schema.names if name not in _NOT_DICTIONARY],
                write_statistics=["segment_id"],
            )
        else:
            self.schema = plain_schema(schema)
            self.writer = pacsv.CSVWriter(self.tmp, self.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if self.kind == "csv":
            batch = batch.cast(self.schema)
        self.writer.write_batch(batch)

    def commit(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with suppress(Exception):
            self.writer.close()
        with suppress(FileNotFoundError):
            self.tmp.unlink()


def run_local(
    *,
    input_path: Path,
    output_path: Path,
    make_scorer: Callable[[Columns], Scorer],
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[Tally, float]:
    """Score `input_path` into `output_path`; return the tally and the wall time (s)."""
    started = time.perf_counter()
    file_format(output_path)  # an unknown output format fails before any work
    if not output_path.parent.is_dir():
        raise PortfolioError(f"{output_path.parent}: no such directory for the output")
    source = open_source(input_path)
    scorer = make_scorer(source.columns)
    workers = workers or os.cpu_count() or 1
    tally = np.zeros(TALLY_SHAPE, np.int64)
    rows_done = 0
    sink = _Sink(output_path, scorer.schema)

    def write(scored: Future[tuple[pa.RecordBatch, np.ndarray]]) -> None:
        # On the one writer thread, in submission order: the output keeps the input's order.
        nonlocal tally, rows_done
        out, batch_tally = scored.result()
        sink.write(out)
        tally += batch_tally
        rows_done += out.num_rows
        if on_progress is not None:
            on_progress(rows_done, max(rows_done, source.rows_total))

    with ExitStack() as stack:
        stack.callback(sink.abort)  # a no-op once committed (the temporary file is gone)
        # One BLAS/OpenMP thread per call: the pool already runs one batch per core.
        stack.enter_context(threadpool_limits(limits=1))
        # Three stages overlap: this thread reads, the pool scores, the writer writes (Arrow's reader,
        # kernels and Parquet writer release the GIL, as do numpy's).
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portfolio"))
        writer = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="portfolio-writer"))
        pending: deque[Future[None]] = deque()
        for batch in source.batches:
            pending.append(writer.submit(write, pool.submit(scorer.score, batch)))
            # Bounded: at most `workers` + 1 batches read and not yet written, whatever the file's size.
            while len(pending) > workers or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failure of scoring or writing at once
        while pending:
            pending.popleft().result()
        sink.commit()
    if on_progress is not None and rows_done != source.rows_total:
        on_progress(rows_done, rows_done)  # the estimate was off (line breaks inside quoted cells)
    return Tally(tally), time.perf_counter() - started
