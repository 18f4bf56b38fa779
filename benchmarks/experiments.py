"""Experiments under steady load, each with a timeline: fault isolation, model rollout, independent
scaling, and a policy promotion and rollback.

Load comes from locust at a fixed rate (fault, rollout: every request's outcome and the record id
it got back are kept) or from wrk in a closed loop (scaling). Times are epoch seconds while running
and seconds from the start of the load in the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from benchmarks import change_control, load, systems, workload
from benchmarks.loadgen import locust_runner
from benchmarks.systems import ROOT
from devtools import servers
from devtools.servers import Server
from models import CSV_COLUMNS, FEATURES, MODEL_NAME, PICKLE_PATH
from models.import_model import version_of

Log = Callable[[str], None]

EVALUATIONS = "/api/v1/evaluations"
PAGES = ["/", "/healthz", "/readyz"]  # the form, the API's liveness, its readiness (503 while the model is down)


def _bodies(n: int = 256) -> list[dict[str, object]]:
    return [workload.evaluation_body(c, i) for i, c in enumerate(workload.customers(n))]


def _stop_locust(run: locust_runner.LocustRun, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """End the load now: SIGTERM makes locust stop its users, write its log and exit."""
    if run.process.poll() is None:
        os.killpg(run.process.pid, signal.SIGTERM)
    return locust_runner.finish(run, timeout_s=timeout_s)


@contextlib.contextmanager
def _running(*items: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(items):
            server.stop()


def _records(db_path: Path) -> dict[str, dict[str, Any]]:
    """Every decision record in the SQLite file, by id (read after the API has stopped)."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in db.execute("SELECT * FROM evaluations")}


# A record is complete when every column that describes the decision is set.
REQUIRED = (
    "id",
    "request_id",
    "customer_name",
    *FEATURES,
    "segment_id",
    "segment_key",
    "distances",
    "decision",
    "reasons",
    "model_name",
    "model_version",
    "policy_version",
    "evaluated_at",
    "created_at",
)


def _check_records(rows: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Records against what clients were told: one complete record per success, none for a failure."""
    ok_ids = {r["id"] for r in rows if r["method"] == "POST" and locust_runner.is_ok(r) and r["id"]}
    ok_without_id = sum(1 for r in rows if r["method"] == "POST" and locust_runner.is_ok(r) and not r["id"])
    incomplete = [rid for rid, rec in records.items() if any(rec.get(c) in (None, "") for c in REQUIRED)]
    return {
        "successful_responses": len(ok_ids) + ok_without_id,
        "records": len(records),
        "successes_without_record": len(ok_ids - records.keys()),
        "records_without_success": len(records.keys() - ok_ids),  # e.g. a client that gave up; should be 0 here
        "successes_without_id": ok_without_id,
        "incomplete_records": len(incomplete),
        "equal": ok_ids == records.keys() and not incomplete and not ok_without_id,
    }


def _timeline(rows: list[dict[str, Any]], *, t0: float) -> dict[str, Any]:
    pages = {}
    for path in PAGES:
        got = [r for r in rows if r["method"] == "GET" and r["path"] == path]
        pages[path] = {
            "requests": len(got),
            "by_status": _count(str(r["status"] or "socket") for r in got),
            "series": [{"t": round(r["start"] - t0, 2), "status": r["status"]} for r in got],
        }
    return {"per_second": locust_runner.per_second(rows, t0=t0), "pages": pages}


def _count(keys: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


# --- fault isolation --------------------------------------------------------------------------------


def fault(*, workdir: Path, smoke: bool, data_path: Path, log: Log) -> dict[str, Any]:
    """Steady load; kill the model service (SIGKILL, its whole process group), wait, start it again.

    Shows: the API and the page stay up; evaluations fail fast (status, latency) while the model is
    down; recovery time; and that decision records equal successful responses.
    """
    rate, users = (60.0, 8) if smoke else (200.0, 16)
    # After the model is back, the API's circuit may stay open for its TTL (5 s) before a trial call
    # closes it: `after_s` must outlast that, or a slow restart leaves no success to measure.
    before_s, down_s, after_s = (3.0, 3.0, 8.0) if smoke else (6.0, 6.0, 10.0)
    db_path = workdir / "fault.db"
    model = systems.model_service_server(log_dir=workdir, workers=1)
    model.start(timeout=120)
    api = systems.evaluation_api_server(log_dir=workdir, model_url=model.url, db_path=db_path)
    restarted: Server | None = None
    with _running(model, api):
        api.start(timeout=60)
        systems.wait_until(api.url + "/readyz", timeout_s=30)
        run = locust_runner.start(
            url=api.url,
            path=EVALUATIONS,
            bodies=_bodies(),
            users=users,
            rate_per_user=rate / users,
            duration_s=300,
            workdir=workdir,
            name="fault",
            capture=True,
            headers=systems.evaluation_api_headers(),
            pages=PAGES,
            page_rate=6.0,
        )
        try:
            settle_s = users / rate + 1.0
            time.sleep(settle_s + before_s)
            t_kill = time.time()
            model.kill()
            t_killed = time.time()  # its processes are gone
            log(f"  model service killed; down for {down_s:.0f}s")
            time.sleep(down_s)
            t_restart = time.time()
            restarted = systems.model_service_server(log_dir=workdir, workers=1, port=model.port)
            restarted.start(timeout=120)
            t_ready = time.time()
            log(f"  model service ready again after {t_ready - t_restart:.1f}s")
            time.sleep(after_s)
        finally:
            rows = _stop_locust(run)
            if restarted is not None:
                restarted.stop()
    # The API has stopped (the writer flushed and closed): the records are final.
    records = _records(db_path)
    posts = [r for r in rows if r["method"] == "POST"]
    t0 = posts[0]["start"] if posts else t_kill
    ok_after_kill = [r for r in posts if r["start"] >= t_kill and locust_runner.is_ok(r)]
    last_ok_before = max(
        (r["start"] + r["latency_ms"] / 1000 for r in posts if r["start"] < t_kill and locust_runner.is_ok(r)),
        default=t_kill,
    )
    first_ok_after = min(
        (r["start"] + r["latency_ms"] / 1000 for r in ok_after_kill if r["start"] >= t_restart), default=None
    )
    down_until = first_ok_after or t_ready
    failed_down = [r for r in posts if t_kill <= r["start"] < down_until and not locust_runner.is_ok(r)]
    lat = np.array([r["latency_ms"] for r in failed_down]) if failed_down else np.array([0.0])
    rel = lambda t: round(t - t0, 2) if t is not None else None  # noqa: E731
    return {
        "rate_rps": rate,
        "users": users,
        "path": EVALUATIONS,
        "events": {
            "kill": rel(t_kill),
            "killed": rel(t_killed),
            "restart": rel(t_restart),
            "model_ready": rel(t_ready),
            "end": rel(posts[-1]["start"]) if posts else None,
        },
        "summary": locust_runner.summarize(rows),
        "while_down": {
            "requests": sum(1 for r in posts if t_kill <= r["start"] < down_until),
            "failed": len(failed_down),
            "by_status": _count(str(r["status"] or "socket") for r in failed_down),
            "failure_latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 1),
                "p99": round(float(np.percentile(lat, 99)), 1),
                "max": round(float(lat.max()), 1),
            },
        },
        "recovery": {
            "model_service_start_s": round(t_ready - t_restart, 2),
            "first_success_after_model_ready_s": round(first_ok_after - t_ready, 2) if first_ok_after else None,
            "evaluations_unavailable_s": round(first_ok_after - last_ok_before, 2) if first_ok_after else None,
        },
        "records": _check_records(rows, records),
        "timeline": _timeline(rows, t0=t0),
    }


# --- model rollout ----------------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Blue is the primary; green is the backup and gets traffic only once blue refuses connections.
    # A request that fails to reach blue (refused, reset on a reused connection) is passed to green:
    # /predict is a pure function, so resending it is safe (non_idempotent allows it for POST).
    upstream model_service {{
        server 127.0.0.1:{blue} max_fails=1 fail_timeout=30s;
        server 127.0.0.1:{green} backup;
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
            proxy_max_temp_file_size 0;  # small bodies: never spill to temporary files
        }}
    }}
}}
"""


def _nginx(*, workdir: Path, blue: int, green: int) -> Server:
    directory = workdir / "nginx"
    directory.mkdir(exist_ok=True)
    port = servers.free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, blue=blue, green=green, port=port), encoding="utf-8")
    return Server(
        name="nginx (blue/green switch)",
        args=[
            shutil.which("nginx") or "nginx",
            "-p",
            str(directory),
            "-c",
            str(conf),
            "-e",
            str(directory / "nginx-error.log"),
        ],
        port=port,
        ready_path="/readyz",  # proxied to blue
        env=dict(os.environ),
        log_path=directory / "nginx.out",
    )


def _python(args: list[str], *, env: dict[str, str], log_path: Path) -> float:
    started = time.monotonic()
    with open(log_path, "ab") as out:
        subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return round(time.monotonic() - started, 2)


def _new_training_data(data_path: Path, out: Path) -> None:
    """Next month's data, as a stand-in: a bootstrap resample of the training CSV (fixed seed)."""
    frame = pd.read_csv(data_path, usecols=list(CSV_COLUMNS.values()))
    frame.sample(frac=1.0, replace=True, random_state=7).to_csv(out, index=False)


def rollout(*, workdir: Path, smoke: bool, data_path: Path, log: Log) -> dict[str, Any]:
    """Steady load; train and import a new model version; move the model service to it, blue/green.

    BentoML has no hot reload, so the new version runs as a second model service (green) beside the
    old one (blue), behind nginx: blue is the primary, green the backup. Once green is ready, blue
    is stopped gracefully (SIGTERM: it finishes what it has in hand and refuses new connections) and
    nginx moves the traffic to green, resending to green anything blue refused. The model store is a
    temporary one, so the project's store (and its `latest`) is left as it was.
    """
    if shutil.which("nginx") is None:
        return {"skipped": "nginx not installed (make system-deps)"}
    if not data_path.is_file():
        return {"skipped": f"training data {data_path} not found"}
    rate, users = (60.0, 8) if smoke else (200.0, 16)
    before_s, after_s = (2.0, 3.0) if smoke else (5.0, 8.0)
    store = workdir / "rollout-store"
    env = servers.project_env(BENTOML_HOME=str(store))
    logs = workdir / "rollout.log"
    _python(["-m", "models.import_model"], env=env, log_path=logs)
    blue_tag = systems.committed_model_tag()
    new_dir = workdir / "new-model"
    new_data = workdir / "new-data.csv"
    _new_training_data(data_path, new_data)

    blue_port, green_port = servers.free_port(), servers.free_port()
    while green_port == blue_port:
        green_port = servers.free_port()
    blue = systems.model_service_server(
        log_dir=workdir, workers=1, model_tag=blue_tag, port=blue_port, BENTOML_HOME=str(store)
    )
    nginx = _nginx(workdir=workdir, blue=blue_port, green=green_port)
    db_path = workdir / "rollout.db"
    api = systems.evaluation_api_server(log_dir=workdir, model_url=nginx.url, db_path=db_path)
    green: Server | None = None
    events: dict[str, float] = {}
    with _running(blue, nginx, api):
        blue.start(timeout=120)
        nginx.start(timeout=30)
        api.start(timeout=60)
        systems.wait_until(api.url + "/readyz", timeout_s=30)
        run = locust_runner.start(
            url=api.url,
            path=EVALUATIONS,
            bodies=_bodies(),
            users=users,
            rate_per_user=rate / users,
            duration_s=300,
            workdir=workdir,
            name="rollout",
            capture=True,
            headers=systems.evaluation_api_headers(),
        )
        try:
            time.sleep(users / rate + 1.0 + before_s)
            events["train"] = time.time()
            train_s = _python(
                ["-m", "models.train", "--data", str(new_data), "--seed", "7", "--out-dir", str(new_dir)],
                env=env,
                log_path=logs,
            )
            events["import"] = time.time()
            import_s = _python(
                [
                    "-m",
                    "models.import_model",
                    "--pickle",
                    str(new_dir / PICKLE_PATH.name),
                    "--card",
                    str(new_dir / "model_card.json"),
                ],
                env=env,
                log_path=logs,
            )
            green_tag = _tag_of(new_dir)
            log(f"  trained {green_tag} in {train_s}s, imported in {import_s}s; starting green")
            events["green_start"] = time.time()
            # Green's card is the new model's, from training (service.py trusts no card in the store).
            green = systems.model_service_server(
                log_dir=workdir,
                workers=1,
                model_tag=green_tag,
                port=green_port,
                BENTOML_HOME=str(store),
                MODEL_CARD_PATH=str(new_dir / "model_card.json"),
            )
            green.start(timeout=120)
            events["green_ready"] = time.time()
            blue.stop()  # graceful; returns once blue has exited
            events["blue_stopped"] = time.time()
            log(f"  green ready after {events['green_ready'] - events['green_start']:.1f}s; blue stopped")
            time.sleep(after_s)
        finally:
            rows = _stop_locust(run)
            if green is not None:
                green.stop()
    records = _records(db_path)
    posts = [r for r in rows if r["method"] == "POST"]
    t0 = posts[0]["start"] if posts else time.time()
    # What the switch absorbed: requests nginx could not complete on blue and passed to green.
    nginx_log = (workdir / "nginx" / "nginx-error.log").read_text(encoding="utf-8", errors="replace")
    resent = sum(1 for line in nginx_log.splitlines() if "[error]" in line and "upstream" in line)
    versions = {"blue": blue_tag.split(":", 1)[1], "green": green_tag.split(":", 1)[1]}
    return {
        "rate_rps": rate,
        "users": users,
        "path": EVALUATIONS,
        "switch": "nginx: blue primary, green backup; blue stopped with SIGTERM once green was ready",
        "versions": versions,
        "events": {k: round(v - t0, 2) for k, v in events.items()} | {"end": round(posts[-1]["start"] - t0, 2)},
        "train_s": train_s,
        "import_s": import_s,
        "summary": locust_runner.summarize(rows),
        "failed_requests": sum(1 for r in posts if not locust_runner.is_ok(r)),
        "resent_by_switch": resent,
        "records": _check_records(rows, records),
        "versions_check": _check_versions(rows, records, versions=versions, green_pickle=new_dir / PICKLE_PATH.name),
        "per_second_versions": _versions_per_second(posts, t0=t0, versions=versions),
        "timeline": {"per_second": locust_runner.per_second(rows, t0=t0)},
    }


def _tag_of(model_dir: Path) -> str:
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    return f"{MODEL_NAME}:{version_of(card['pickle_sha256'])}"


def _check_versions(
    rows: list[dict[str, Any]], records: dict[str, dict[str, Any]], *, versions: dict[str, str], green_pickle: Path
) -> dict[str, Any]:
    """Every record names a known version, the same one its response named, and holds what that
    version's pipeline computes for the record's input: its segment and its distances to the five
    centroids (recomputed here from both pickles). Two versions rarely disagree on a segment, but
    their centroids differ, so the distances fingerprint the version that made each record."""
    by_version = {versions["blue"]: joblib.load(PICKLE_PATH), versions["green"]: joblib.load(green_pickle)}
    response_version = {r["id"]: r["version"] for r in rows if r["id"]}
    recs = list(records.values())
    X = np.array([[rec[f] for f in FEATURES] for rec in recs], dtype=np.float64).reshape(-1, len(FEATURES))
    distances = {v: p.transform(X) if len(X) else np.empty((0, 5)) for v, p in by_version.items()}
    unknown = mismatched_response = not_from_named = segments_disagree = distances_disagree = 0
    counts: dict[str, int] = {}
    for i, rec in enumerate(recs):
        version = rec["model_version"]
        counts[version] = counts.get(version, 0) + 1
        if version not in by_version:
            unknown += 1
            continue
        if response_version.get(rec["id"]) not in (None, version):
            mismatched_response += 1
        stored = np.array(json.loads(rec["distances"]) if isinstance(rec["distances"], str) else rec["distances"])
        named = distances[version][i]
        if int(named.argmin()) != rec["segment_id"] or not np.allclose(stored, named, atol=1e-5, rtol=0):
            not_from_named += 1
        others = [distances[v][i] for v in by_version if v != version]
        if any(int(o.argmin()) != rec["segment_id"] for o in others):
            segments_disagree += 1
        if all(not np.allclose(stored, o, atol=1e-5, rtol=0) for o in others):
            distances_disagree += 1
    return {
        "records_by_version": counts,
        "unknown_version": unknown,
        "record_differs_from_response": mismatched_response,
        "record_not_from_named_version": not_from_named,
        # How discriminating the check is: records whose content the other version could not have made.
        "records_other_version_gives_other_segment": segments_disagree,
        "records_other_version_gives_other_distances": distances_disagree,
        "ok": unknown == 0 and mismatched_response == 0 and not_from_named == 0,
    }


def _versions_per_second(posts: list[dict[str, Any]], *, t0: float, versions: dict[str, str]) -> list[dict[str, Any]]:
    names = {v: k for k, v in versions.items()}
    bins: dict[int, dict[str, int]] = {}
    for r in posts:
        if locust_runner.is_ok(r):
            b = bins.setdefault(int(r["start"] - t0), {"blue": 0, "green": 0, "other": 0})
            b[names.get(r["version"], "other")] += 1
    return [{"t": t, **bins[t]} for t in sorted(bins)]


# --- independent scaling ----------------------------------------------------------------------------


def scaling(*, workdir: Path, smoke: bool, data_path: Path, log: Log) -> dict[str, Any]:
    """The same end-to-end load (64 clients, closed loop) with the model service at 1, then 2 workers;
    the evaluation API unchanged. What changes: throughput, latency, and where the CPU goes."""
    clients = 8 if smoke else 64
    duration_s = 2.0 if smoke else 8.0
    runs = []
    for workers in (1, 2):
        with systems.end_to_end(
            log_dir=workdir, db_path=workdir / f"scaling-{workers}.db", model_workers=workers
        ) as system:
            load.warm_up(system, workdir=workdir)
            point = load.closed_loop(system, clients=clients, duration_s=duration_s, workdir=workdir)
            log(
                f"  model service {workers} worker(s): {point['throughput_rps']:.0f} req/s, "
                f"p99 {point['latency_ms']['p99']} ms, errors {point['errors']['total']}"
            )
            runs.append({"model_workers": workers, **point})
    return {"clients": clients, "duration_s": duration_s, "runs": runs}


# --- policy promotion and rollback ---------------------------------------------------------------


def promotion(*, workdir: Path, smoke: bool, data_path: Path, log: Log) -> dict[str, Any]:
    """Closed-loop load on `make run`'s system (64 clients; locust, every answer kept) while a challenger
    policy is promoted through the API by a second risk user, then rolled back.

    Shows: no request fails; every answer and every record names exactly one of the two versions, the
    record the same as its answer; answers finished before the promotion's effective instant name the
    old version, answers started after it (and finished before the rollback's) the new one, answers
    started after the rollback's the old one again, whichever API process gave them."""
    users = 2 if smoke else 64
    before_s, after_s = (1.0, 2.0) if smoke else (3.0, 5.0)
    db_path = workdir / "promotion.db"
    events: dict[str, float] = {}
    with systems.make_run_with_challenger(log_dir=workdir, db_path=db_path, path=EVALUATIONS) as system:
        operators: change_control.Operators = system.control
        challenger = system.config["challenger"]
        versions = {"old": challenger["live_policy_version"], "new": challenger["policy_version"]}
        run = locust_runner.start(
            url=system.url,
            path=EVALUATIONS,
            bodies=_bodies(),
            users=users,
            rate_per_user=0.0,  # closed loop: each user sends its next request when the answer arrives
            duration_s=300,
            workdir=workdir,
            name="promotion",
            capture=True,
            headers=system.headers,
        )
        try:
            time.sleep(run.ramp_s + 1.0 + before_s)
            events["promote"] = time.time()
            promoted = operators.promote(challenger["challenger_id"], "Sombra medida pelo make bench, sob carga.")
            events["promote_effective"] = datetime.fromisoformat(promoted["effective_at"]).timestamp()
            log(f"  promoted {versions['new']}; every process switches at {promoted['effective_at']}")
            time.sleep(max(events["promote_effective"] + after_s - time.time(), 0.0))
            events["rollback"] = time.time()
            back = operators.rollback("Volta medida pelo make bench, sob carga.")
            events["rollback_effective"] = datetime.fromisoformat(back["effective_at"]).timestamp()
            log(f"  rolled back to {back['policy_version']}; every process switches at {back['effective_at']}")
            time.sleep(max(events["rollback_effective"] + after_s - time.time(), 0.0))
        finally:
            rows = _stop_locust(run)
    # `make run` has stopped (every record flushed): the records are final.
    records = _records(db_path)
    posts = [r for r in rows if r["method"] == "POST"]
    t0 = posts[0]["start"] if posts else time.time()
    failed = [r for r in posts if not locust_runner.is_ok(r)]
    return {
        "clients": users,
        "path": EVALUATIONS,
        "versions": versions,
        "switch_delay_s": round(events["promote_effective"] - events["promote"], 2),
        "events": {k: round(v - t0, 2) for k, v in events.items()} | {"end": round(posts[-1]["start"] - t0, 2)},
        "summary": locust_runner.summarize(rows),
        "failed_requests": len(failed),
        "failed_by_status": _count(str(r["status"] or "socket") for r in failed),
        "records": _check_records(rows, records),
        "versions_check": check_policy_versions(posts, records, versions=versions, events=events),
        "per_second_versions": _policies_per_second(posts, t0=t0, versions=versions),
    }


def check_policy_versions(
    posts: list[dict[str, Any]],
    records: dict[str, dict[str, Any]],
    *,
    versions: dict[str, str],
    events: dict[str, float],
) -> dict[str, Any]:
    """Each successful answer against the two switch instants (epoch seconds in events) and its record."""
    known = set(versions.values())
    ok = [r for r in posts if locust_runner.is_ok(r)]
    promote, rollback = events["promote_effective"], events["rollback_effective"]
    end = lambda r: r["start"] + r["latency_ms"] / 1000  # noqa: E731
    phases = {
        "before_promotion": ([r for r in ok if end(r) < promote], versions["old"]),
        "after_promotion": ([r for r in ok if r["start"] >= promote and end(r) < rollback], versions["new"]),
        "after_rollback": ([r for r in ok if r["start"] >= rollback], versions["old"]),
    }
    in_phase = {id(r) for rs, _ in phases.values() for r in rs}
    spanning = [r for r in ok if id(r) not in in_phase]  # in flight at an instant: either version is right
    answers_by_version = _count(str(r.get("policy")) for r in ok)
    records_by_version = _count(str(rec["policy_version"]) for rec in records.values())
    answer_of = {r["id"]: r.get("policy") for r in ok if r["id"]}
    wrong = {name: sum(1 for r in rs if r.get("policy") != expected) for name, (rs, expected) in phases.items()}
    out: dict[str, Any] = {
        "answers_by_version": answers_by_version,
        "records_by_version": records_by_version,
        "answers_naming_another_version": sum(1 for r in ok if r.get("policy") not in known),
        "records_naming_another_version": sum(1 for rec in records.values() if rec["policy_version"] not in known),
        "record_differs_from_answer": sum(
            1 for rid, rec in records.items() if rid in answer_of and answer_of[rid] != rec["policy_version"]
        ),
        "answers": {name: len(rs) for name, (rs, _) in phases.items()} | {"spanning_a_switch": len(spanning)},
        "answers_naming_the_wrong_version": wrong,
        "spanning_by_version": _count(str(r.get("policy")) for r in spanning),
    }
    out["ok"] = (
        out["answers_naming_another_version"] == 0
        and out["records_naming_another_version"] == 0
        and out["record_differs_from_answer"] == 0
        and not any(wrong.values())
        and all(rs for rs, _ in phases.values())  # each phase was really under load
    )
    return out


def _policies_per_second(posts: list[dict[str, Any]], *, t0: float, versions: dict[str, str]) -> list[dict[str, Any]]:
    names = {v: k for k, v in versions.items()}
    bins: dict[int, dict[str, int]] = {}
    for r in posts:
        b = bins.setdefault(int(r["start"] - t0), {"old": 0, "new": 0, "other": 0, "failed": 0})
        b[names.get(r.get("policy") or "", "other") if locust_runner.is_ok(r) else "failed"] += 1
    return [{"t": t, **bins[t]} for t in sorted(bins)]
