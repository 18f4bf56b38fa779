"""Score a whole portfolio: every customer of a CSV or Parquet file through the model and the policy.

    python -m portfolio.score --input customers.csv --output decisions.parquet
        [--policy-b candidate.yaml] [--engine local|spark] [--spark-master local[2]] [--explain]

Writes one row per input row, in input order, and `<output>.summary.json`. The decisions are the
evaluation API's: the same verified model pickle and the same policy file; with `--explain`, each
row's explanation too (portfolio/explanation.py: the API's compiled search, over the rows). `score()` is the same run
for a caller in Python (a worker process reporting progress).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from decisioning import policy as policy_module
from decisioning.policy import Policy, PolicyError, load_policy
from models import CARD_PATH, PICKLE_PATH
from portfolio.batch import Columns, PortfolioError, Scorer
from portfolio.model import IntegrityError, VerifiedModel, load_geometry, load_segmenter, read_verified
from portfolio.summary import summarize, summary_path, write_summary

logger = logging.getLogger(__name__)

# The evaluation API's default POLICY_PATH (evaluation_api/config.py; a test keeps them equal), without
# importing the API's settings.
DEFAULT_POLICY = Path(policy_module.__file__).with_name("policy.yaml")
Engine = Literal["local", "spark"]


def _policies(policy_path: Path, candidate_path: Path | None) -> tuple[Policy, Policy | None]:
    try:
        return load_policy(policy_path), load_policy(candidate_path) if candidate_path else None
    except PolicyError as exc:
        raise PortfolioError(f"policy file refused: {exc}") from exc


def _model(pickle_path: Path, card_path: Path) -> VerifiedModel:
    try:
        return read_verified(pickle_path=pickle_path, card_path=card_path)
    except IntegrityError as exc:
        raise PortfolioError(f"model refused: {exc}") from exc


def score(
    *,
    input_path: str,
    output_path: str,
    policy_path: Path = DEFAULT_POLICY,
    policy: Policy | None = None,
    candidate_path: Path | None = None,
    candidate_policy: Policy | None = None,
    engine: Engine = "local",
    spark_master: str | None = None,
    pickle_path: Path = PICKLE_PATH,
    card_path: Path = CARD_PATH,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    """Run the portfolio; return the summary (also written beside the output).

    Raises PortfolioError (InputError for the file itself) with a plain message on anything that is
    not a bug: a missing column, an unreadable file, a refused model or policy. `on_progress` gets
    (rows_done, rows_total) after each batch is written (local engine; rows_total is an estimate for
    CSV until the last call). `policy`, when given, decides instead of `policy_path`'s file: the
    worker passes the registry's live version (evaluation_api/releases/); `candidate_policy`, when
    given, is policy B instead of `candidate_path`'s file (the worker passes a challenger's version).
    `explain` adds the explanation columns (portfolio/batch.py)."""
    if candidate_policy is not None and candidate_path is not None:
        raise PortfolioError("give policy B once: a candidate policy file or a candidate policy, not both")
    loaded, candidate = _policies(policy_path, candidate_path)
    policy = policy or loaded
    candidate = candidate_policy or candidate
    model = _model(pickle_path, card_path)
    if explain:
        try:
            load_geometry(model)  # a model that cannot be explained fails before any work
        except IntegrityError as exc:
            raise PortfolioError(f"explanation refused: {exc}") from exc
    if engine == "spark":
        from portfolio.spark_engine import run_spark  # PySpark only when asked for

        tally, seconds = run_spark(
            input_path=input_path,
            output_path=output_path,
            model=model,
            policy=policy,
            candidate=candidate,
            master=spark_master,
            explain=explain,
        )
    elif engine == "local":
        from portfolio.local_engine import run_local

        segmenter = load_segmenter(model)
        geometry = load_geometry(model) if explain else None

        def make_scorer(columns: Columns) -> Scorer:
            return Scorer(
                model=segmenter,
                model_version=model.version,
                policy=policy,
                candidate=candidate,
                columns=columns,
                geometry=geometry,
            )

        tally, seconds = run_local(
            input_path=Path(input_path),
            output_path=Path(output_path),
            make_scorer=make_scorer,
            workers=workers,
            on_progress=on_progress,
        )
    else:
        raise PortfolioError(f"unknown engine {engine!r}: use local or spark")
    summary = summarize(
        tally,
        model_version=model.version,
        policy_version=policy.version,
        policy_version_b=candidate.version if candidate else None,
        seconds=seconds,
    )
    if engine == "local":
        write_summary(Path(summary_path(output_path)), summary)
    else:
        from portfolio.spark_engine import write_text

        write_text(summary_path(output_path), summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portfolio.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="CSV or Parquet with a header (Spark: any path it reads)")
    parser.add_argument("--output", required=True, help="where to write the decisions (.csv or .parquet)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="current policy (default: the API's)")
    parser.add_argument("--policy-b", type=Path, default=None, help="a candidate policy to compare with")
    parser.add_argument("--engine", choices=["local", "spark"], default="local")
    parser.add_argument("--spark-master", default=None, help="Spark master URL (default: local[*] or spark-submit's)")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add each row's explanation: top_reason and the counterfactual (feature, value, decision)",
    )
    parser.add_argument("--workers", type=int, default=None, help="local engine threads (default: one per core)")
    parser.add_argument("--model-pickle", type=Path, default=PICKLE_PATH, help="default: the committed pickle")
    parser.add_argument("--model-card", type=Path, default=CARD_PATH, help="its card (the sha256 it must have)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = score(
            input_path=args.input,
            output_path=args.output,
            policy_path=args.policy,
            candidate_path=args.policy_b,
            engine=args.engine,
            spark_master=args.spark_master or None,
            workers=args.workers,
            pickle_path=args.model_pickle,
            card_path=args.model_card,
            explain=args.explain,
        )
    except PortfolioError as exc:
        logger.error("portfolio run failed: %s", exc)
        return 2
    logger.info(
        "%s rows (%s invalid) -> %s at %s rows/s; summary in %s",
        summary["rows_total"],
        summary["rows_invalid"],
        args.output,
        summary["rows_per_s"],
        summary_path(args.output),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
