"""The command line of change control, over the API (so that sign-in, roles and four eyes apply to it
as to anyone): `python -m evaluation_api.releases --help`.

    export EVALUATION_API_TOKEN=$(...)      # or --username NAME (the password is read from stdin)
    python -m evaluation_api.releases create candidate.yaml
    python -m evaluation_api.releases challenger start 2
    python -m evaluation_api.releases model create 3a5f0c1e9b2d4e6f  # a version a candidate service serves
    python -m evaluation_api.releases challenger start --model-version 1   # a model (with the live policy)
    python -m evaluation_api.releases report 1
    python -m evaluation_api.releases backtest 1 carteira.csv --timeout 600   # challenger 1 over a file
    python -m evaluation_api.releases promote 1 --justification "..."   # someone other than the author
    python -m evaluation_api.releases rollback --justification "..."
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from contract import DECISIONS, SEGMENT_KEYS

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0
BACKTEST_TIMEOUT_S = 600.0
POLL_S = 1.0


class CliError(Exception):
    pass


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _token(args: argparse.Namespace, client: httpx.Client, stdin: Any) -> str:
    if args.username:
        password = stdin.readline().rstrip("\r\n")
        response = client.post("/api/v1/auth/token", data={"username": args.username, "password": password})
        if response.status_code != 200:
            raise CliError(f"sign-in refused ({response.status_code}): {_message(response)}")
        token: str = response.json()["access_token"]
        return token
    token = os.environ.get("EVALUATION_API_TOKEN", "")
    if not token:
        raise CliError("no credentials: set EVALUATION_API_TOKEN, or pass --username and the password on stdin")
    return token


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    lines = [str(body.get("message", ""))] if isinstance(body, dict) else [str(body)]
    for error in body.get("errors", []) if isinstance(body, dict) else []:
        where = f"line {error['line']}: " if error.get("line") else ""
        lines.append(f"  {where}{error.get('location') or error.get('field')}: {error.get('message')}")
    return "\n".join(lines)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(f"the API at {client.base_url} did not answer: {exc}") from None
    if response.status_code >= 400:
        code = ""
        with contextlib.suppress(ValueError, AttributeError):
            code = response.json().get("error", "")
        raise CliError(f"{method} {path} refused ({response.status_code} {code}): {_message(response)}")
    return response.json() if response.content else None


def _print_report(report: dict[str, Any]) -> None:
    _say(
        f"challenger {report['challenger_id']} (policy {report['policy_version'] or 'live'}, "
        f"model {report.get('model_version') or 'live'}): "
        f"{report['evaluations']} evaluations in shadow, {report['changed']} decided otherwise"
    )
    _print_swap(report["swap"])
    for run in report.get("backtests", []):
        _say(
            f"backtest {run['run_id']} over {run['file_name']} by {run['created_by']} at {run['created_at']}: "
            f"{run['rows_total']} rows, {run['rows_invalid']} invalid, {run['changed']} decided otherwise"
        )


def _print_swap(swap: dict[str, dict[str, int]]) -> None:
    width = max(len(d) for d in DECISIONS) + 2
    _say("live \\ challenger".ljust(20) + "".join(d.rjust(width) for d in DECISIONS))
    for live in DECISIONS:
        _say(live.ljust(20) + "".join(str(swap[live][d]).rjust(width) for d in DECISIONS))


def _print_backtest(run: dict[str, Any], *, by_segment: bool) -> None:
    """The run's swap counts over its valid rows (invalid rows are neither policy's), overall and by segment."""
    summary = run["summary"]
    changed = sum(summary["swap"][a][b] for a in DECISIONS for b in DECISIONS if a != b)
    _say(
        f"backtest of challenger {run['challenger_id']} (policy {summary['policy_version_b']} against live "
        f"{summary['policy_version']}) over {run['file_name']}, run {run['id']}: {summary['rows_total']} rows, "
        f"{summary['rows_invalid']} invalid, {changed} decided otherwise"
    )
    _print_swap(summary["swap"])
    for key in SEGMENT_KEYS if by_segment else ():
        _say(f"\n{key}")
        _print_swap(summary["swap_by_segment"][key])


def _backtest(args: argparse.Namespace, client: httpx.Client) -> Any:
    """Upload the file as a run naming the challenger, then poll it until it ends or --timeout passes."""
    deadline = time.monotonic() + args.timeout
    kind = "application/vnd.apache.parquet" if args.file.suffix.lower() == ".parquet" else "text/csv"
    with args.file.open("rb") as content:
        run = _call(
            client,
            "POST",
            "/api/v1/portfolio-runs",
            files={"file": (args.file.name, content, kind)},
            data={"challenger_id": str(args.challenger_id)},
            timeout=max(TIMEOUT_S, args.timeout),  # the upload of a large file
        )
    while run["status"] not in ("succeeded", "failed"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError(
                f"run {run['id']} is still {run['status']} after {args.timeout:g} s: "
                f"follow it with GET /api/v1/portfolio-runs/{run['id']}, or run backtest with a longer --timeout"
            )
        time.sleep(min(args.poll, left))
        run = _call(client, "GET", f"/api/v1/portfolio-runs/{run['id']}")
    if run["status"] == "failed":
        raise CliError(f"run {run['id']} failed: {run['error']}")
    return run


def main(argv: list[str] | None = None, *, stdin: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation_api.releases",
        description="Policy versions, challengers in shadow, promotion and rollback, through the evaluation API.",
    )
    parser.add_argument("--api-url", default=os.environ.get("EVALUATION_API_URL", DEFAULT_API_URL))
    parser.add_argument("--username", help="sign in as this account, the password read from stdin")
    parser.add_argument("--json", action="store_true", help="print the API's answers as JSON")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create", help="register a policy file as a draft version").add_argument("file", type=Path)
    commands.add_parser("list", help="the policy versions")
    commands.add_parser("show", help="one version, with its text").add_argument("version_id", type=int)
    challenger = commands.add_parser("challenger", help="start or stop a challenger")
    steps = challenger.add_subparsers(dest="step", required=True)
    start = steps.add_parser("start", help="put a policy version, a model version, or both, in shadow")
    start.add_argument("version_id", type=int, nargs="?", help="the policy version (omitted: the live policy)")
    start.add_argument("--model-version", type=int, help="the model version's id (omitted: the live model)")
    model = commands.add_parser("model", help="register or list model versions")
    model_steps = model.add_subparsers(dest="step", required=True)
    model_steps.add_parser("create", help="register a version a model service serves").add_argument("version")
    model_steps.add_parser("list", help="the model versions")
    steps.add_parser("stop", help="end a challenger's shadow").add_argument("challenger_id", type=int)
    commands.add_parser("challengers", help="the challengers")
    commands.add_parser("report", help="live x challenger decisions").add_argument("challenger_id", type=int)
    backtest = commands.add_parser("backtest", help="a challenger's decisions over a portfolio file (CSV, Parquet)")
    backtest.add_argument("challenger_id", type=int)
    backtest.add_argument("file", type=Path)
    backtest.add_argument(
        "--timeout", type=float, default=BACKTEST_TIMEOUT_S, help="seconds to wait for the run (default 600)"
    )
    backtest.add_argument("--poll", type=float, default=POLL_S, help="seconds between two looks at the run")
    backtest.add_argument("--by-segment", action="store_true", help="also the swap table of each segment")
    promote = commands.add_parser("promote", help="make a challenger's version live (four eyes)")
    promote.add_argument("challenger_id", type=int)
    promote.add_argument("--justification", required=True)
    rollback = commands.add_parser("rollback", help="return to the previous live policy")
    rollback.add_argument("--justification", required=True)
    commands.add_parser("releases", help="what was live when")
    args = parser.parse_args(argv)
    stdin = stdin or sys.stdin

    try:
        with httpx.Client(base_url=args.api_url, timeout=TIMEOUT_S) as client:
            client.headers["Authorization"] = f"Bearer {_token(args, client, stdin)}"
            answer = _run(args, client)
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '')}\n")
        return 1
    listing = args.command in ("list", "challengers", "releases") or (args.command == "model" and args.step == "list")
    if args.json or not (listing or args.command in ("report", "backtest")):
        _say(json.dumps(answer, indent=2, ensure_ascii=False) if answer is not None else "ok")
    elif args.command == "report":
        _print_report(answer)
    elif args.command == "backtest":
        _print_backtest(answer, by_segment=args.by_segment)
    else:
        for item in answer:
            _say("  ".join(f"{k}={v}" for k, v in item.items() if k not in ("text", "justification", "card")))
    return 0


def _run(args: argparse.Namespace, client: httpx.Client) -> Any:
    if args.command == "create":
        return _call(client, "POST", "/api/v1/policy-versions", json={"text": args.file.read_text(encoding="utf-8")})
    if args.command == "list":
        return _call(client, "GET", "/api/v1/policy-versions")
    if args.command == "show":
        return _call(client, "GET", f"/api/v1/policy-versions/{args.version_id}")
    if args.command == "model" and args.step == "create":
        return _call(client, "POST", "/api/v1/model-versions", json={"version": args.version})
    if args.command == "model":
        return _call(client, "GET", "/api/v1/model-versions")
    if args.command == "challenger" and args.step == "start":
        body = {"policy_version_id": args.version_id, "model_version_id": args.model_version}
        return _call(client, "POST", "/api/v1/challengers", json=body)
    if args.command == "challenger":
        return _call(client, "POST", f"/api/v1/challengers/{args.challenger_id}/stop")
    if args.command == "challengers":
        return _call(client, "GET", "/api/v1/challengers")
    if args.command == "report":
        return _call(client, "GET", f"/api/v1/challengers/{args.challenger_id}/report")
    if args.command == "backtest":
        return _backtest(args, client)
    if args.command == "promote":
        return _call(
            client,
            "POST",
            f"/api/v1/challengers/{args.challenger_id}/promote",
            json={"justification": args.justification},
        )
    if args.command == "rollback":
        return _call(client, "POST", "/api/v1/releases/rollback", json={"justification": args.justification})
    return _call(client, "GET", "/api/v1/releases")


if __name__ == "__main__":
    sys.exit(main())
