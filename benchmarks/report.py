"""Turn results.json into docs/results/summary.md (tables) and PNG charts (matplotlib).

    python -m benchmarks.report [--out docs/results]   # regenerate from an existing results.json

docs/ARCHITECTURE.md links the summary and the charts and quotes their numbers, so every number
in the documentation comes from one run of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from benchmarks import portfolio
from benchmarks.stack import LIMITED_KEY, STACK_KEY

DOCS = Path(__file__).resolve().parents[1] / "docs"
ARCHITECTURE = DOCS / "ARCHITECTURE.md"
README = DOCS.parent / "README.md"

# Goals from the issues, for this machine, side by side in one run (issue 12).
GOAL_E2E_VS_MONOLITH = 1.2  # end to end /avaliar at 64 clients, at least 1.2x the monolith's throughput
GOAL_MODEL_VS_MONOLITH = 1.5  # the model service's /predict at 64 single-customer clients
GOAL_ONE_CLIENT_P50_MS = 2.0  # end to end, one client, p50 below this
GOAL_BULK = 500_000  # customers per second through the batch path
GOAL_EXPLAINED_THROUGHPUT = 0.9  # 64 clients with explanations, at least 0.9x the same system without
GOAL_EXPLANATION_MS = 0.2  # what explaining adds to a lone evaluation's p50, at most
GOAL_CHALLENGER_THROUGHPUT = 0.85  # 64 clients with a challenger in shadow, within 15% of the same system without
GOAL_CHALLENGER_ONE_CLIENT_P50_MS = 2.5  # one client, with a challenger in shadow, p50 below this

# `make run` with a challenger deciding in shadow (benchmarks/change_control.py), in the same rounds.
CHALLENGER_KEY = "end_to_end_challenger"
NOT_MEASURED = "not measured"

ROLE_NAMES = {
    "monolith": "monolith",
    "evaluation_api": "evaluation API",
    "model_service": "model service",
    "gateway": "gateway",
    "database": "PostgreSQL",
    "load_generator": "load tool",
}
# The three systems `make bench` alternates, then the model service's variants (one round each).
HEADLINE_KEYS = (
    "monolith",
    "monolith_workers",
    "end_to_end",
    "end_to_end_unexplained",
    CHALLENGER_KEY,
    "model_service",
)
ORDER = [
    "monolith",
    "monolith_workers",
    "end_to_end",
    "end_to_end_unexplained",
    CHALLENGER_KEY,
    "model_service",
    "model_service_batching_on_1w",
    "model_service_batching_on_2w",
    "model_service_batching_off_1w",
    "model_service_batching_off_2w",
]
LABELS = {
    "monolith": "monolith (before)",
    "monolith_workers": "monolith, as many uvicorn workers as the API has processes",
    "end_to_end": "evaluation API → model service (make run)",
    "end_to_end_unexplained": "the same, decisions not explained (EXPLAIN_DECISIONS=false)",
    CHALLENGER_KEY: "the same, a challenger policy deciding in shadow",
    "model_service": "model service (default configuration)",
    "model_service_batching_on_1w": "model service, batching, 1 worker",
    "model_service_batching_on_2w": "model service, batching, 2 workers",
    "model_service_batching_off_1w": "model service, no batching, 1 worker",
    "model_service_batching_off_2w": "model service, no batching, 2 workers",
}


SHORT = {
    "monolith": "monolith",
    "monolith_workers": "monolith\nN workers",
    "end_to_end": "API →\nmodel service\n(make run)",
    "end_to_end_unexplained": "the same,\nnot explained",
    CHALLENGER_KEY: "the same,\na challenger\nin shadow",
    "model_service": "model service\n(default)",
    "model_service_batching_on_1w": "model service\nbatching\n1 worker",
    "model_service_batching_on_2w": "model service\nbatching\n2 workers",
    "model_service_batching_off_1w": "model service\nno batching\n1 worker",
    "model_service_batching_off_2w": "model service\nno batching\n2 workers",
}


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def rounds_of(results: dict[str, Any], key: str, clients: int, mode: str = "closed_loop") -> dict[int, dict[str, Any]]:
    """The raw points of one system at one load, by round (a run without rounds is round 1)."""
    return {
        int(p.get("round", 1)): p
        for p in results["load"]
        if p["key"] == key and p["clients"] == clients and p["mode"] == mode
    }


def aggregate(points: list[dict[str, Any]]) -> dict[str, Any]:
    """One point from several rounds: the median of each figure, with its spread (min, max) in
    `spread`; errors are summed over the rounds (any error in any round shows)."""
    first = points[0]
    tp = [p["throughput_rps"] for p in points]
    lat_keys = [k for k in first["latency_ms"] if all(p["latency_ms"].get(k) is not None for p in points)]
    by_status: dict[str, int] = {}
    socket = 0
    for p in points:
        for k, v in p["errors"]["by_status"].items():
            by_status[k] = by_status.get(k, 0) + v
        s = p["errors"]["socket"]
        socket += s if isinstance(s, int) else sum(s.values())
    resources: dict[str, dict[str, Any]] = {}
    for role in first.get("resources", {}):
        rs = [p["resources"][role] for p in points if role in p.get("resources", {})]
        resources[role] = {
            "cpu_seconds": _median([r.get("cpu_seconds", 0.0) for r in rs]),
            "cpu_cores": round(_median([r["cpu_cores"] for r in rs]), 2),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "processes": max(r.get("processes", 1) for r in rs),
        }
    cpu_roles = {k for p in points for k in p.get("cpu_ms_per_request", {})}
    cpu = {
        role: round(_median([p["cpu_ms_per_request"][role] for p in points if role in p["cpu_ms_per_request"]]), 3)
        for role in sorted(cpu_roles)
    }
    spread: dict[str, list[float]] = {"throughput_rps": [min(tp), max(tp)]}
    for k in lat_keys:
        xs = [p["latency_ms"][k] for p in points]
        spread[k] = [min(xs), max(xs)]
    for role in cpu_roles:
        xs = [p["cpu_ms_per_request"][role] for p in points if role in p["cpu_ms_per_request"]]
        spread[f"cpu_ms_{role}"] = [round(min(xs), 3), round(max(xs), 3)]
    others = [p["machine_cpu"]["other_cores"] for p in points if p.get("machine_cpu")]
    return {
        **{k: v for k, v in first.items() if k not in ("round", "per_second")},
        "rounds": len(points),
        "throughput_rps": round(_median(tp), 1),
        "latency_ms": {k: round(_median([p["latency_ms"][k] for p in points]), 2) for k in lat_keys},
        "errors": {"total": sum(p["errors"]["total"] for p in points), "by_status": by_status, "socket": socket},
        "resources": resources,
        "cpu_ms_per_request": cpu,
        "machine_cpu": {"other_cores": round(_median(others), 2)} if others else None,
        "spread": spread,
    }


def _point(results: dict[str, Any], key: str, clients: int, mode: str = "closed_loop") -> dict[str, Any] | None:
    """The system at that load over every round: medians and spread (see aggregate)."""
    points = list(rounds_of(results, key, clients, mode).values())
    return aggregate(points) if points else None


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _spread(p: dict[str, Any], name: str, digits: int = 0) -> str:
    """`median` and, over several rounds, `(min–max)`."""
    value = p["throughput_rps"] if name == "throughput_rps" else p["latency_ms"].get(name)
    lo_hi = p.get("spread", {}).get(name)
    if p.get("rounds", 1) < 2 or not lo_hi:
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} ({_fmt(lo_hi[0], digits)}–{_fmt(lo_hi[1], digits)})"


def _cpu_spread(p: dict[str, Any], role: str = "system") -> str:
    value = p.get("cpu_ms_per_request", {}).get(role)
    lo_hi = p.get("spread", {}).get(f"cpu_ms_{role}")
    if value is None:
        return "–"
    if p.get("rounds", 1) < 2 or not lo_hi:
        return f"{value:.2f}"
    return f"{value:.2f} ({lo_hi[0]:.2f}–{lo_hi[1]:.2f})"


def _ratios(
    results: dict[str, Any], key: str, base: str, clients: int
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """Rounds in which both systems ran at that load: (round, point of key, point of base)."""
    a, b = rounds_of(results, key, clients), rounds_of(results, base, clients)
    return [(r, a[r], b[r]) for r in sorted(a.keys() & b.keys())]


def _summary(xs: list[float], digits: int = 2) -> dict[str, Any]:
    return {"median": round(_median(xs), digits), "min": round(min(xs), digits), "max": round(max(xs), digits)}


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, from this run's rounds. A ratio is taken within each round (the two systems
    ran minutes apart, in alternation); `met` judges the median of the rounds, `every_round` whether
    the goal held in each of them."""
    top = max(results["settings"]["clients"])
    out: dict[str, Any] = {"clients": top, "rounds": results["settings"].get("rounds", 1)}
    pairs = _ratios(results, "end_to_end", "monolith", top)
    if pairs:
        ratios = [e["throughput_rps"] / m["throughput_rps"] if m["throughput_rps"] else 0.0 for _, e, m in pairs]
        held = [
            ratio >= GOAL_E2E_VS_MONOLITH
            and e["latency_ms"]["p99"] < m["latency_ms"]["p99"]
            and e["errors"]["total"] == 0
            for ratio, (_, e, m) in zip(ratios, pairs, strict=True)
        ]
        e_p99 = _median([e["latency_ms"]["p99"] for _, e, _ in pairs])
        m_p99 = _median([m["latency_ms"]["p99"] for _, _, m in pairs])
        errors = sum(e["errors"]["total"] for _, e, _ in pairs)
        out["end_to_end_vs_monolith"] = {
            "ratio": _summary(ratios),
            "per_round": [round(x, 2) for x in ratios],
            "goal": GOAL_E2E_VS_MONOLITH,
            "p99_ms": {"end_to_end": round(e_p99, 1), "monolith": round(m_p99, 1)},
            "errors": {"end_to_end": errors, "monolith": sum(m["errors"]["total"] for _, _, m in pairs)},
            "met": _median(ratios) >= GOAL_E2E_VS_MONOLITH and e_p99 < m_p99 and errors == 0,
            "every_round": all(held),
        }
    pairs = _ratios(results, "end_to_end", "monolith_workers", top)
    if pairs:
        # No goal: the fair comparison (equal process counts), reported beside the one the goal is on.
        ratios = [e["throughput_rps"] / m["throughput_rps"] if m["throughput_rps"] else 0.0 for _, e, m in pairs]
        out["end_to_end_vs_monolith_workers"] = {
            "ratio": _summary(ratios),
            "per_round": [round(x, 2) for x in ratios],
            "workers": results["settings"].get("monolith_workers"),
            "errors": {
                "end_to_end": sum(e["errors"]["total"] for _, e, _ in pairs),
                "monolith_workers": sum(m["errors"]["total"] for _, _, m in pairs),
            },
        }
    per_core = {key: xs for key in HEADLINE_KEYS if (xs := _per_busy_core(results, key, top))}
    if per_core:
        out["requests_per_busy_core"] = {key: _summary(xs, 0) for key, xs in per_core.items()}
    pairs = _ratios(results, "model_service", "monolith", top)
    if pairs:
        ratios = [s["throughput_rps"] / m["throughput_rps"] if m["throughput_rps"] else 0.0 for _, s, m in pairs]
        errors = sum(s["errors"]["total"] for _, s, _ in pairs)
        out["model_service_vs_monolith"] = {
            "best": "model_service",
            "ratio": _summary(ratios),
            "per_round": [round(x, 2) for x in ratios],
            "goal": GOAL_MODEL_VS_MONOLITH,
            "errors": errors,
            "met": _median(ratios) >= GOAL_MODEL_VS_MONOLITH and errors == 0,
            "every_round": all(
                x >= GOAL_MODEL_VS_MONOLITH and s["errors"]["total"] == 0
                for x, (_, s, _) in zip(ratios, pairs, strict=True)
            ),
        }
    lone = rounds_of(results, "end_to_end", 1)
    if lone:
        p50s = [p["latency_ms"]["p50"] for p in lone.values()]
        out["one_client_p50"] = {
            "p50_ms": _summary(p50s),
            "goal_ms": GOAL_ONE_CLIENT_P50_MS,
            "met": _median(p50s) < GOAL_ONE_CLIENT_P50_MS,
            "every_round": all(x < GOAL_ONE_CLIENT_P50_MS for x in p50s),
        }
    explained = _explanation_cost(results, top)
    if explained:
        out["explanation_cost"] = explained
    challenged = challenger_cost(results, top)
    if challenged:
        out["challenger_cost"] = challenged
    promoted = promotion_goal(results)
    if promoted:
        out["promotion"] = promoted
    cpu: dict[str, Any] = {}
    for key in HEADLINE_KEYS:
        rounds = rounds_of(results, key, top)
        xs = [p["cpu_ms_per_request"]["system"] for p in rounds.values() if p.get("cpu_ms_per_request")]
        if xs:
            cpu[key] = _summary(xs, 3)
    if cpu:
        out["cpu_ms_per_request"] = cpu
    headline = _bulk_headline(results)
    if headline:
        out["bulk"] = {
            "customers_per_s": headline["customers_per_s"],
            "goal": GOAL_BULK,
            "met": headline["customers_per_s"] >= GOAL_BULK,
        }
    return out


def busy_cores(point: dict[str, Any]) -> float:
    """The cores a system kept busy over a point: its processes' CPU, the load tool's left out."""
    return sum(r["cpu_cores"] for role, r in point.get("resources", {}).items() if role != "load_generator")


def _per_busy_core(results: dict[str, Any], key: str, clients: int) -> list[float]:
    """Requests per second per busy core, each round: what a core buys, whatever the number of cores a
    system keeps busy (a system on more processes is not credited for the cores it takes)."""
    return [
        p["throughput_rps"] / cores for p in rounds_of(results, key, clients).values() if (cores := busy_cores(p)) > 0
    ]


def _explanation_cost(results: dict[str, Any], top: int) -> dict[str, Any] | None:
    """What explaining each decision costs: the same system with and without it, in the same rounds."""
    pairs = _ratios(results, "end_to_end", "end_to_end_unexplained", top)
    lone = _ratios(results, "end_to_end", "end_to_end_unexplained", 1)
    if not pairs or not lone:
        return None
    ratios = [e["throughput_rps"] / u["throughput_rps"] if u["throughput_rps"] else 0.0 for _, e, u in pairs]
    added = [e["latency_ms"]["p50"] - u["latency_ms"]["p50"] for _, e, u in lone]
    return {
        "throughput_ratio": _summary(ratios),
        "goal_ratio": GOAL_EXPLAINED_THROUGHPUT,
        "one_client_p50_added_ms": _summary(added, 3),
        "goal_added_ms": GOAL_EXPLANATION_MS,
        "met": _median(ratios) >= GOAL_EXPLAINED_THROUGHPUT and _median(added) < GOAL_EXPLANATION_MS,
        "every_round": all(r >= GOAL_EXPLAINED_THROUGHPUT for r in ratios)
        and all(a < GOAL_EXPLANATION_MS for a in added),
    }


def challenger_cost(results: dict[str, Any], top: int) -> dict[str, Any] | None:
    """What a challenger in shadow costs: the same system with and without one, in the same rounds, at
    the top load (throughput) and at one client (p50), with what the shadow stored, dropped and failed."""
    pairs = _ratios(results, CHALLENGER_KEY, "end_to_end", top)
    lone = rounds_of(results, CHALLENGER_KEY, 1)
    if not pairs or not lone:
        return None
    ratios = [c["throughput_rps"] / b["throughput_rps"] if b["throughput_rps"] else 0.0 for _, c, b in pairs]
    p50s = [p["latency_ms"]["p50"] for p in lone.values()]
    errors = sum(c["errors"]["total"] for _, c, _ in pairs) + sum(p["errors"]["total"] for p in lone.values())
    shadow = {k: 0 for k in ("decisions", "stored", "dropped", "failed")}
    for kept in (results.get("challenger") or {}).get("shadow_after_round", []):
        for k in shadow:
            shadow[k] += kept["round_delta"][k]
    return {
        "throughput_ratio": _summary(ratios),
        "per_round": [round(x, 2) for x in ratios],
        "goal_ratio": GOAL_CHALLENGER_THROUGHPUT,
        "one_client_p50_ms": _summary(p50s),
        "goal_p50_ms": GOAL_CHALLENGER_ONE_CLIENT_P50_MS,
        "errors": errors,
        "shadow": shadow,
        "met": _median(ratios) >= GOAL_CHALLENGER_THROUGHPUT
        and _median(p50s) < GOAL_CHALLENGER_ONE_CLIENT_P50_MS
        and errors == 0,
        "every_round": all(r >= GOAL_CHALLENGER_THROUGHPUT for r in ratios)
        and all(x < GOAL_CHALLENGER_ONE_CLIENT_P50_MS for x in p50s),
    }


def promotion_goal(results: dict[str, Any]) -> dict[str, Any] | None:
    """A promotion (and a rollback) under load: no failed request, every answer and record naming
    exactly one of the two versions, the new one from the effective instant."""
    p = results.get("experiments", {}).get("promotion")
    if not p or "skipped" in p:
        return None
    return {
        "clients": p["clients"],
        "requests": p["summary"]["requests"],
        "failed_requests": p["failed_requests"],
        "versions_ok": p["versions_check"]["ok"],
        "records_equal": p["records"]["equal"],
        "met": p["failed_requests"] == 0 and p["versions_check"]["ok"] and p["records"]["equal"],
    }


def _bulk_headline(results: dict[str, Any]) -> dict[str, Any] | None:
    bulk = results.get("bulk") or {}
    return next((p for p in bulk.get("paths", []) if p.get("headline")), None)


# --- Markdown ----------------------------------------------------------------------------------------


def _resources(point: dict[str, Any]) -> tuple[str, str]:
    cpu, mem = [], []
    for role, r in point.get("resources", {}).items():
        name = ROLE_NAMES.get(role, role)
        cpu.append(f"{name} {r['cpu_cores']:.2f}")
        if role != "load_generator":
            mem.append(f"{name} {r['peak_rss_mib']:.0f}")
    return ", ".join(cpu), ", ".join(mem)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _range(s: dict[str, Any], unit: str = "×", digits: int = 2) -> str:
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def markdown(results: dict[str, Any], *, images: str = "") -> str:
    """The summary; `images` is the path prefix of the charts as seen from where the Markdown lives."""
    m = results["machine"]
    s = results["settings"]
    rounds = s.get("rounds", 1)
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`python -m benchmarks.run`) on {results['generated_at']}, commit "
        f"`{m.get('git_commit') or '?'}`, in {results.get('elapsed_s', 0):.0f} s"
        + (" — **smoke run: not a measurement**" if results.get("smoke") else "")
        + ".",
        "",
        f"Machine: {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python "
        f"{m['python']}; load average at start {', '.join(str(x) for x in m['load_average_at_start'])}. "
        "Every process, the load tools included, shares the same cores.",
        "",
        f"Load: closed loop with wrk ({m.get('wrk') or 'wrk'}), {s['duration_s']:g} s per point after a warm-up, "
        f"at {', '.join(str(c) for c in s['clients'])} concurrent connections; fixed rate with locust, "
        f"{s['fixed_rate_rps']:g} requests/s paced over {s['fixed_rate_users']} users. "
        f"**{rounds} round{'s' if rounds != 1 else ''}**: in each, the monolith (one process, as it ran; and on "
        "as many uvicorn workers as `make run` has API processes), the system as `make run` starts it (and the "
        "same with decisions not explained) and the model service alone (its default configuration) run one "
        "after the other, the order rotating "
        "from round to round; every figure is the median of the rounds, with the lowest and highest in "
        "parentheses. Ratios are taken within a round. Throughput counts successful (2xx) responses only. "
        "CPU per request is the CPU time of the system's processes (every process of each tree: BentoML's "
        "workers, supervisor's programs) over the point, divided by the responses: unlike throughput, other "
        "work on the machine barely moves it. CPU in cores (1.00 = one core busy) is averaged over the point; "
        "*other CPU* is what the rest of the machine used meanwhile: the noise in that point. Memory is the "
        "peak resident set, summed over each server's processes.",
        "",
    ]
    g = goals(results)
    lines += [
        "## Goals",
        "",
        "| goal | median of the rounds (lowest–highest) | met (median) | held in every round |",
        "|---|---|---|---|",
    ]
    if "end_to_end_vs_monolith" in g:
        e = g["end_to_end_vs_monolith"]
        lines.append(
            f"| `/avaliar` end to end (`make run`) at {g['clients']} clients ≥ {e['goal']}× the monolith's throughput, "
            f"lower p99, no errors | {_range(e['ratio'])}; p99 {_fmt(e['p99_ms']['end_to_end'], 1)} ms vs "
            f"{_fmt(e['p99_ms']['monolith'], 1)} ms; errors {e['errors']['end_to_end']} "
            f"| {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    if "model_service_vs_monolith" in g:
        e = g["model_service_vs_monolith"]
        lines.append(
            f"| model service `/predict` (default configuration) at {g['clients']} single-customer clients "
            f"≥ {e['goal']}× the monolith, no errors | {_range(e['ratio'])}; errors {e['errors']} "
            f"| {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    if "one_client_p50" in g:
        e = g["one_client_p50"]
        lines.append(
            f"| one client, end to end: p50 < {e['goal_ms']:g} ms | {_range(e['p50_ms'], ' ms')} "
            f"| {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    if "explanation_cost" in g:
        e = g["explanation_cost"]
        lines.append(
            f"| explaining every decision: {g['clients']}-client throughput ≥ {e['goal_ratio']}× the same system "
            f"without it, and a lone evaluation's p50 less than {e['goal_added_ms']:g} ms slower "
            f"| {_range(e['throughput_ratio'])}; p50 {_range(e['one_client_p50_added_ms'], ' ms', 3)} "
            f"| {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    if "challenger_cost" in g:
        e = g["challenger_cost"]
        lines.append(
            f"| a challenger in shadow: {g['clients']}-client throughput ≥ {e['goal_ratio']}× the same system without "
            f"one, one client's p50 < {e['goal_p50_ms']:g} ms | {_range(e['throughput_ratio'])}; p50 "
            f"{_range(e['one_client_p50_ms'], ' ms')}; errors {e['errors']} "
            f"| {_yes(e['met'])} | {_yes(e['every_round'])} |"
        )
    if "promotion" in g:
        e = g["promotion"]
        lines.append(
            f"| a promotion and a rollback under {e['clients']}-client load: no failed request, every answer and "
            f"record naming one of the two versions | {e['failed_requests']} failed of {e['requests']:,}; versions "
            f"{'right' if e['versions_ok'] else '**wrong**'} | {_yes(e['met'])} | – |"
        )
    if "bulk" in g:
        e = g["bulk"]
        lines.append(
            f"| bulk ≥ 500,000 customers/s through the batch path | {e['customers_per_s']:,} customers/s "
            f"| {_yes(e['met'])} | – |"
        )
    if results.get("portfolio"):
        lines += portfolio.goal_rows(results["portfolio"])
    lines.append("")
    lines += held_in_every_round(results)
    lines += headline(results)
    lines += fair_baselines(results)
    lines += change_control_md(results)

    lines += [
        "## Closed loop (wrk)",
        "",
        f"![Throughput and p99 per system and concurrency]({images}load.png)",
        "",
        f"![CPU per request and peak memory at the highest concurrency]({images}resources.png)",
        "",
        "| system | clients | rounds | req/s | p50 ms | p99 ms | errors | CPU ms per request | CPU (cores) "
        "| other CPU | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for key in ORDER:
        for c in s["clients"]:
            p = _point(results, key, c)
            if p:
                cpu, mem = _resources(p)
                lines.append(
                    f"| {LABELS[key]} | {c} | {p['rounds']} | {_spread(p, 'throughput_rps')} | "
                    f"{_spread(p, 'p50', 1)} | {_spread(p, 'p99', 1)} | {_errors(p)} | {_cpu_spread(p)} | {cpu} | "
                    f"{_other(p)} | {mem} |"
                )
    lines.append("")
    fixed = [p for key in ORDER if (p := _point(results, key, s["fixed_rate_users"], "fixed_rate"))]
    if fixed:
        lines += [
            f"## Fixed rate (locust, {s['fixed_rate_rps']:g} requests/s offered)",
            "",
            "| system | rounds | offered req/s | served req/s | p50 ms | p95 ms | p99 ms | errors "
            "| CPU ms per request | CPU (cores) | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for p in fixed:
            lines.append(
                f"| {LABELS[p['key']]} | {p['rounds']} | {_fmt(p['offered_rps'])} | {_spread(p, 'throughput_rps')} | "
                f"{_spread(p, 'p50', 1)} | {_spread(p, 'p95', 1)} | {_spread(p, 'p99', 1)} | "
                f"{_errors(p)} | {_cpu_spread(p)} | {_resources(p)[0]} | {_other(p)} |"
            )
        lines.append("")
    bulk = results.get("bulk")
    if bulk:
        lines += [
            "## Bulk (one request, model service in its default configuration)",
            "",
            "| path | customers | request MB | seconds (each run) | customers/s |",
            "|---|---:|---:|---|---:|",
        ]
        for b in bulk["paths"]:
            name = f"`{b['path']}`" + (" (the batch path)" if b["headline"] else "")
            lines.append(
                f"| {name} | {b['customers']:,} | {b['request_mb']} | "
                f"{', '.join(f'{t:.3f}' for t in b['seconds'])} | {b['customers_per_s']:,} |"
            )
        lines.append("")
    if results.get("portfolio"):
        lines += portfolio.markdown(results["portfolio"])
    lines += stack_md(results)
    lines += _experiments_md(results, images=images)
    if results.get("carried_over"):
        lines += (
            ["## Carried over from an earlier run", ""]
            + [
                f"- {k}: not run this time (`--only`); its figures are those of the run of {v}"
                for k, v in results["carried_over"].items()
            ]
            + [""]
        )
    if results.get("skipped"):
        lines += ["## Not run", ""] + [f"- {k}: {v}" for k, v in results["skipped"].items()] + [""]
    return "\n".join(lines)


# The systems of the stack section (results["stack"]["load"], apart from the load section's: its
# monolith ran in the stack's rounds, not in the load section's).
STACK_LABELS = {
    "monolith": "monolith (before), in the same rounds",
    STACK_KEY: "make stack through its gateway (PostgreSQL), limits raised for the bench",
    LIMITED_KEY: "the same, the gateway on its production limits (one round)",
}


def _limits(limits: dict[str, int]) -> str:
    return f"{limits['rate_rps']:,} requests/s, bursts of {limits['burst']:,}, {limits['concurrent']:,} at once"


def stack_md(results: dict[str, Any]) -> list[str]:
    """`/avaliar` through make stack's gateway against the monolith in the same rounds, and what one
    client address gets through the production limits."""
    st = results.get("stack")
    if not st or not st.get("load"):
        return []
    settings, limits = st["settings"], st["settings"]["limits"]
    top = max(settings["clients"])
    lines = [
        "## Through the gateway (make stack: nginx, one container each, PostgreSQL records)",
        "",
        f"Measured by `make bench-stack` on {st.get('generated_at', '?')}, commit "
        f"`{st.get('machine', {}).get('git_commit') or '?'}`, load average at start "
        f"{', '.join(str(x) for x in st.get('machine', {}).get('load_average_at_start', [])) or '?'}.",
        "",
        f"`/avaliar` through the gateway of `make stack` (`make bench-stack`): gateway (nginx), evaluation API "
        "(one uvicorn process), model service (one worker) and PostgreSQL, each in its container, against the "
        f"monolith, alternating for {settings['rounds']} rounds of {settings['duration_s']:g} s per point. The "
        f"load tool is one client address and the gateway limits each address ({_limits(limits['production'])}): "
        f"the path's capacity is measured with the limits raised ({_limits(limits['bench'])}), then the gateway "
        "is started again on its production limits. Busy cores count every process of the four containers.",
        "",
        "| system | clients | rounds | req/s | p50 ms | p99 ms | errors | CPU ms per request | busy cores "
        "| req/s per busy core | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in STACK_LABELS.items():
        for c in settings["clients"]:
            p = _point(st, key, c)
            if not p:
                continue
            per_core = _per_busy_core(st, key, c)
            lines.append(
                f"| {label} | {c} | {p['rounds']} | {_spread(p, 'throughput_rps', 1 if key == LIMITED_KEY else 0)} | "
                f"{_spread(p, 'p50', 1)} | {_spread(p, 'p99', 1)} | {_errors(p)} | {_cpu_spread(p)} | "
                f"{busy_cores(p):.2f} | {_range(_summary(per_core, 0), '', 0) if per_core else '–'} | "
                f"{_resources(p)[1]} |"
            )
    lines.append("")
    pairs = _ratios(st, STACK_KEY, "monolith", top)
    if pairs:
        ratios = [s["throughput_rps"] / max(m["throughput_rps"], 1e-9) for _, s, m in pairs]
        per_core = [
            (s["throughput_rps"] / max(busy_cores(s), 1e-9)) / max(m["throughput_rps"] / max(busy_cores(m), 1e-9), 1e-9)
            for _, s, m in pairs
        ]
        lines.append(
            f"Through the gateway against the monolith at {top} clients, each round: "
            f"{', '.join(f'{x:.2f}×' for x in ratios)} (median {_median(ratios):.2f}×); per busy core "
            f"{', '.join(f'{x:.2f}×' for x in per_core)}."
        )
    limited = _point(st, LIMITED_KEY, top)
    if limited:
        statuses = limited["errors"]["by_status"]
        lines.append(
            f"With the production limits, one address with {top} connections got "
            f"{limited['throughput_rps']:,.1f} answers 2xx per second and {statuses.get('429', 0):,} answers 429 "
            f"in {limited['duration_s']:.1f} s."
        )
    return [*lines, ""]


def change_control_facts(results: dict[str, Any]) -> list[str]:
    """The challenger's cost and the promotion under load, one sentence each; a figure the results do
    not hold is said to be not measured (the README and the summary quote these)."""
    g = goals(results)
    c, p = g.get("challenger_cost"), g.get("promotion")
    top = g["clients"]
    if c:
        sh = c["shadow"]
        challenger = (
            f"**A challenger in shadow** (`make run` with a candidate policy deciding every evaluation again, in "
            f"the same {_rounds(g['rounds'])} as the system without one): at {top} clients "
            f"{_range(c['throughput_ratio'])} the throughput without one (goal ≥ {c['goal_ratio']}×: "
            f"{'met' if c['met'] else 'not met'} on the median, {'held' if c['every_round'] else 'not held'} in "
            f"every round); one client's p50 {_range(c['one_client_p50_ms'], ' ms')} (goal < {c['goal_p50_ms']:g} "
            f"ms); {c['errors']} errors. The shadow over the rounds: {sh['stored']:,} stored, {sh['dropped']:,} "
            f"dropped, {sh['failed']:,} failed, of {sh['decisions']:,} evaluations."
        )
    else:
        challenger = f"**A challenger in shadow:** {NOT_MEASURED} (no `{CHALLENGER_KEY}` points in the results)."
    if p:
        v = results["experiments"]["promotion"]["versions_check"]
        a = v["answers"]
        promotion = (
            f"**A promotion and a rollback under {p['clients']}-client load** (`/api/v1/evaluations`): "
            f"{p['failed_requests']} failed requests of {p['requests']:,}; every answer and record names exactly "
            f"one of the two versions, each record its answer's, the new one from the promotion's effective "
            f"instant and the old one again from the rollback's: {'yes' if p['versions_ok'] else '**no**'} "
            f"({a['before_promotion']:,} answers before, {a['after_promotion']:,} between, "
            f"{a['after_rollback']:,} after, {a['spanning_a_switch']:,} in flight at a switch)."
        )
    else:
        promotion = (
            f"**A promotion and a rollback under load:** {NOT_MEASURED} (no `promotion` experiment in the results)."
        )
    return [challenger, promotion]


def _rounds(n: int) -> str:
    return f"{n} round{'s' if n != 1 else ''}"


def change_control_md(results: dict[str, Any]) -> list[str]:
    lines = ["## Change control under load", ""] + [f"- {f}" for f in change_control_facts(results)] + [""]
    top = max(results["settings"]["clients"])
    pairs = _ratios(results, CHALLENGER_KEY, "end_to_end", top)
    lone = rounds_of(results, CHALLENGER_KEY, 1)
    shadow = {k["round"]: k for k in (results.get("challenger") or {}).get("shadow_after_round", [])}
    if pairs:
        lines += [
            f"| round | req/s at {top} clients, with / without a challenger | ratio | p50 at 1 client, with (ms) "
            "| shadow: evaluations, stored, dropped, failed |",
            "|---:|---:|---:|---:|---|",
        ]
        for r, c, b in pairs:
            d = shadow.get(r, {}).get("round_delta")
            counts = f"{d['decisions']:,}, {d['stored']:,}, {d['dropped']:,}, {d['failed']:,}" if d else NOT_MEASURED
            p50 = lone[r]["latency_ms"]["p50"] if r in lone else None
            lines.append(
                f"| {r} | {_fmt(c['throughput_rps'])} / {_fmt(b['throughput_rps'])} "
                f"| {c['throughput_rps'] / max(b['throughput_rps'], 1e-9):.2f}× | {_fmt(p50, 2)} | {counts} |"
            )
        lines.append("")
    return lines


def fair_baselines(results: dict[str, Any]) -> list[str]:
    """The monolith on one process and on as many as the API has, beside the new system, per busy core:
    which comparison answers which question."""
    g = goals(results)
    top = g["clients"]
    per_core = g.get("requests_per_busy_core", {})
    if "monolith_workers" not in per_core:
        return []
    workers = results["settings"].get("monolith_workers")
    lines = [
        f"## Fair baselines ({top} clients)",
        "",
        "- *The monolith as it ran (one process) against `make run`* answers: what does this machine serve with "
        "the new system as shipped, against the original as shipped? It mixes two changes: the architecture, "
        "and the number of processes that evaluate.",
        f"- *The monolith on {workers} uvicorn workers (as many processes as `make run` has API processes) against "
        "`make run`* answers: at equal process counts, what do the split into two services, the rules, the "
        "records and the rest cost or buy?",
        "- *Requests per busy core* answers: what does one core buy in each system, whatever number of cores "
        "it keeps busy? Busy cores are the CPU time of the system's processes over the point (the load tool's "
        "left out).",
        "",
        "| system | req/s | busy cores | req/s per busy core |",
        "|---|---:|---:|---:|",
    ]
    for key in HEADLINE_KEYS:
        p = _point(results, key, top)
        if p and key in per_core:
            cores = busy_cores(p)
            lines.append(
                f"| {LABELS[key]} | {_spread(p, 'throughput_rps')} | {cores:.2f} | {_range(per_core[key], '', 0)} |"
            )
    e = g.get("end_to_end_vs_monolith_workers")
    if e:
        lines += [
            "",
            f"End to end against the monolith on {workers} workers, each round: "
            f"{', '.join(f'{x:.2f}×' for x in e['per_round'])} (median {e['ratio']['median']:.2f}×).",
        ]
    return [*lines, ""]


def held_in_every_round(results: dict[str, Any]) -> list[str]:
    """Statements that were true in each round, with the range they held within: what the
    architecture document may state as results (a single round's figure is not one)."""
    g = goals(results)
    top = g["clients"]
    n = len({p.get("round", 1) for p in results["load"] if p["key"] in HEADLINE_KEYS})
    if not n and results.get("portfolio"):  # a run of the portfolio section alone
        n = max(c["rounds"] for c in results["portfolio"]["cases"].values())
    out = [f"## What held in every round ({n} round{'s' if n != 1 else ''})", ""]
    facts = []
    e = g.get("end_to_end_vs_monolith")
    if e:
        r = e["ratio"]
        if r["min"] >= 1.0:
            facts.append(
                f"At {top} clients, `/avaliar` through `make run`'s system served more than the monolith in every "
                f"round: {r['min']:.2f}× to {r['max']:.2f}×."
            )
        else:
            facts.append(
                f"At {top} clients, `/avaliar` through `make run`'s system served {r['min']:.2f}× to "
                f"{r['max']:.2f}× the monolith's throughput: it was not ahead in every round."
            )
    pairs = _ratios(results, "end_to_end", "monolith", top)
    if pairs:
        lower = [e_["latency_ms"]["p99"] < m_["latency_ms"]["p99"] for _, e_, m_ in pairs]
        if all(lower):
            facts.append(f"Its p99 at {top} clients was below the monolith's in every round.")
        else:
            facts.append(f"Its p99 at {top} clients was below the monolith's in {sum(lower)} of {len(lower)} rounds.")
    s = g.get("model_service_vs_monolith")
    if s:
        facts.append(
            f"The model service alone (default configuration) served {s['ratio']['min']:.2f}× to "
            f"{s['ratio']['max']:.2f}× the monolith's throughput at {top} single-customer clients"
            + (", with no error in any round." if s["errors"] == 0 else f", with {s['errors']} errors in all.")
        )
    o = g.get("one_client_p50")
    if o:
        facts.append(
            f"One client, end to end: p50 between {o['p50_ms']['min']:.2f} and {o['p50_ms']['max']:.2f} ms "
            + ("(below the goal in every round)." if o["every_round"] else "(not below the goal in every round).")
        )
    cpu = g.get("cpu_ms_per_request", {})
    if cpu:
        parts = [f"{LABELS[k]} {v['min']:.2f}–{v['max']:.2f} ms" for k, v in cpu.items()]
        facts.append(f"CPU per request at {top} clients, lowest to highest round: " + "; ".join(parts) + ".")
    if results.get("portfolio"):
        facts += portfolio.facts(results["portfolio"])
    return out + [f"- {f}" for f in facts] + [""]


def headline(results: dict[str, Any]) -> list[str]:
    """The run in a few sentences, with its medians: what docs/ARCHITECTURE.md quotes."""
    top = max(results["settings"]["clients"])
    point = lambda key, clients=top: _point(results, key, clients)  # noqa: E731
    rps = lambda p: _fmt(p["throughput_rps"])  # noqa: E731
    p99 = lambda p: _fmt(p["latency_ms"]["p99"], 1)  # noqa: E731
    mono, e2e = point("monolith"), point("end_to_end")
    mono1, e2e1 = point("monolith", 1), point("end_to_end", 1)
    out = ["## In a few sentences (medians of the rounds)", ""]
    if mono and e2e:
        # The ratio is taken within each round and then summarised, as in "What held in every round":
        # the ratio of the two medians can be any round's, the best one included.
        pairs = _ratios(results, "end_to_end", "monolith", top)
        ratios = [e["throughput_rps"] / max(m["throughput_rps"], 1e-9) for _, e, m in pairs]
        ratio = _range(_summary(ratios)) if len(ratios) > 1 else f"{ratios[0]:.2f}×"
        out.append(
            f"- **End to end vs the monolith, {top} clients, `/avaliar`:** {rps(e2e)} vs {rps(mono)} requests/s "
            f"({ratio} within the rounds); p99 {p99(e2e)} vs {p99(mono)} ms; errors {e2e['errors']['total']} vs "
            f"{mono['errors']['total']}. The new path does more per request: business rules, a decision record "
            "committed to SQLite before answering, and a second process behind an HTTP hop."
        )
    if mono and e2e and e2e.get("cpu_ms_per_request") and mono.get("cpu_ms_per_request"):
        c = e2e["cpu_ms_per_request"]
        out.append(
            f"- **CPU per evaluation at {top} clients:** {mono['cpu_ms_per_request']['system']:.2f} ms in the "
            f"monolith; {c['system']:.2f} ms end to end ({c.get('evaluation_api', 0):.2f} ms in the evaluation API, "
            f"{c.get('model_service', 0):.2f} ms in the model service)."
        )
    if mono1 and e2e1:
        a, b = e2e1["latency_ms"]["p50"], mono1["latency_ms"]["p50"]
        out.append(
            f"- **What the extra hop costs a lone request (1 client):** p50 {a:.2f} ms end to end vs {b:.2f} ms in "
            f"the monolith (+{a - b:.2f} ms: the hop, the rules and the record's commit)."
        )
    ms = point("model_service")
    if mono and ms:
        out.append(
            f"- **The model service alone, {top} single-customer clients:** {rps(ms)} requests/s in its default "
            f"configuration, {ms['throughput_rps'] / max(mono['throughput_rps'], 1e-9):.2f}× the monolith."
        )
    on, off = point("model_service_batching_on_1w"), point("model_service_batching_off_1w")
    if on and off:
        out.append(
            f"- **What adaptive batching buys (1 worker, {top} clients, one round):** {rps(on)} vs {rps(off)} "
            f"requests/s, p99 {p99(on)} vs {p99(off)} ms."
        )
    g = goals(results)
    if "bulk" in g:
        customers = _bulk_headline(results)["customers"]  # type: ignore[index]
        out.append(
            f"- **Bulk:** {g['bulk']['customers_per_s']:,} customers/s for {customers:,} customers in one "
            "request through the batch path."
        )
    ex = results.get("experiments", {})
    f = ex.get("fault")
    if f and "skipped" not in f:
        rec = f["recovery"]
        out.append(
            f"- **Fault isolation:** with the model service killed, evaluations failed in "
            f"{f['while_down']['failure_latency_ms']['p50']} ms (p50) with {_statuses(f['while_down']['by_status'])}; "
            f"the form answered {_statuses(f['timeline']['pages']['/']['by_status'])}; evaluations were back "
            f"{rec['first_success_after_model_ready_s']} s after the model service was ready "
            f"({rec['evaluations_unavailable_s']} s without evaluations in all: the model service's start "
            f"{rec['model_service_start_s']} s, the harness's wait between the kill and the restart "
            f"{f['events']['restart'] - f['events']['kill']:.2f} s; a supervisor's automatic restart was not "
            "measured); records equal successful responses: "
            f"{'yes' if f['records']['equal'] else '**no**'}."
        )
    r = ex.get("rollout")
    if r and "skipped" not in r:
        out.append(
            f"- **Model rollout:** {r['failed_requests']} failed requests of {r['summary']['requests']:,}; every "
            f"record names the version that made it: {'yes' if r['versions_check']['ok'] else '**no**'}."
        )
    sc = ex.get("scaling")
    if sc and "skipped" not in sc and len(sc["runs"]) == 2:
        a, b = sc["runs"]
        out.append(
            f"- **Independent scaling:** model service at 1 → 2 workers, end to end at {sc['clients']} clients: "
            f"{rps(a)} → {rps(b)} requests/s, p99 {p99(a)} → {p99(b)} ms."
        )
    return [*out, ""]


def _other(p: dict[str, Any]) -> str:
    m = p.get("machine_cpu")
    return f"{m['other_cores']:.2f}" if m else "–"


def _errors(p: dict[str, Any]) -> str:
    e = p["errors"]
    if not e["total"]:
        return "0"
    detail = [f"{k}: {v}" for k, v in e["by_status"].items()]
    socket = e["socket"] if isinstance(e["socket"], int) else sum(e["socket"].values())
    if socket:
        detail.append(f"socket: {socket}")
    return f"{e['total']} ({', '.join(detail)})"


def _experiments_md(results: dict[str, Any], *, images: str) -> list[str]:
    ex = results.get("experiments", {})
    lines: list[str] = []
    f = ex.get("fault")
    if f and "skipped" not in f:
        ev, down, rec, recs = f["events"], f["while_down"], f["recovery"], f["records"]
        pages = f["timeline"]["pages"]
        lines += [
            "## Fault isolation",
            "",
            f"{f['rate_rps']:g} evaluations/s (`{f['path']}`, locust), model service killed (SIGKILL) at "
            f"{ev['kill']} s, started again at {ev['restart']} s, ready at {ev['model_ready']} s.",
            "",
            f"![Fault isolation timeline]({images}fault.png)",
            "",
            "| what | measured |",
            "|---|---|",
            f"| evaluations while the model service was down | {down['requests']:,}, of which failed "
            f"{down['failed']:,} ({_statuses(down['by_status'])}) |",
            f"| how fast they failed (p50 / p99 / max) | {down['failure_latency_ms']['p50']} / "
            f"{down['failure_latency_ms']['p99']} / {down['failure_latency_ms']['max']} ms |",
            f"| the form `/` and `/healthz` during the run | {_statuses(pages['/']['by_status'])}; "
            f"{_statuses(pages['/healthz']['by_status'])} |",
            f"| `/readyz` during the run | {_statuses(pages['/readyz']['by_status'])} |",
            f"| model service start (restart → ready) | {rec['model_service_start_s']} s |",
            f"| first successful evaluation after the model was ready | {rec['first_success_after_model_ready_s']} s |",
            f"| evaluations unavailable (last success before → first after) | {rec['evaluations_unavailable_s']} s |",
            f"| successful responses / decision records | {recs['successful_responses']:,} / {recs['records']:,} |",
            f"| successes without a record; records without a success; incomplete records | "
            f"{recs['successes_without_record']}; {recs['records_without_success']}; {recs['incomplete_records']} |",
            "",
        ]
    r = ex.get("rollout")
    if r and "skipped" not in r:
        vc, recs, ev = r["versions_check"], r["records"], r["events"]
        lines += [
            "## Model rollout (blue/green)",
            "",
            f"{r['rate_rps']:g} evaluations/s (`{r['path']}`, locust). Switch: {r['switch']}. Training started at "
            f"{ev['train']} s (took {r['train_s']} s), import {r['import_s']} s, green ready at {ev['green_ready']} s, "
            f"blue stopped at {ev['blue_stopped']} s.",
            "",
            f"![Model rollout timeline]({images}rollout.png)",
            "",
            "| what | measured |",
            "|---|---|",
            f"| requests / failed | {r['summary']['requests']:,} / {r['failed_requests']} |",
            f"| requests blue dropped while stopping, resent to green by nginx | {r.get('resent_by_switch', '–')} |",
            f"| latency p50 / p99 over the whole run | {r['summary']['latency_ms'].get('p50')} / "
            f"{r['summary']['latency_ms'].get('p99')} ms |",
            f"| records by version | {', '.join(f'`{k}`: {v:,}' for k, v in vc['records_by_version'].items())} "
            f"(blue `{r['versions']['blue']}`, green `{r['versions']['green']}`) |",
            f"| successful responses / records; incomplete | {recs['successful_responses']:,} / {recs['records']:,}; "
            f"{recs['incomplete_records']} |",
            f"| records naming an unknown version; naming another version than their response | "
            f"{vc['unknown_version']}; {vc['record_differs_from_response']} |",
            f"| records whose segment and distances are not what the named version computes | "
            f"{vc['record_not_from_named_version']} (the other version would have given other distances for "
            f"{vc['records_other_version_gives_other_distances']:,} of them, another segment for "
            f"{vc['records_other_version_gives_other_segment']:,}) |",
            "",
        ]
    sc = ex.get("scaling")
    if sc and "skipped" not in sc:
        lines += [
            "## Independent scaling",
            "",
            f"End to end (`/avaliar`), {sc['clients']} clients (wrk), {sc['duration_s']:g} s each; only the "
            "model service's workers change.",
            "",
            f"![Independent scaling]({images}scaling.png)",
            "",
            "| model service workers | req/s | p50 ms | p99 ms | errors | CPU (cores) | other CPU "
            "| peak memory (MiB) |",
            "|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for run in sc["runs"]:
            cpu, mem = _resources(run)
            lat = run["latency_ms"]
            lines.append(
                f"| {run['model_workers']} | {_fmt(run['throughput_rps'])} | {_fmt(lat['p50'], 1)} | "
                f"{_fmt(lat['p99'], 1)} | {_errors(run)} | {cpu} | {_other(run)} | {mem} |"
            )
        lines.append("")
    return lines


def _statuses(by_status: dict[str, int]) -> str:
    return ", ".join(f"{v:,}× {k}" for k, v in by_status.items()) or "none"


# --- charts -----------------------------------------------------------------------------------------

COLORS = {
    "monolith": "#7f7f7f",
    "monolith_workers": "#c7c7c7",
    "end_to_end": "#1f77b4",
    "end_to_end_unexplained": "#aec7e8",
    CHALLENGER_KEY: "#9467bd",
    "model_service": "#2ca02c",
    "model_service_batching_on_1w": "#17becf",
    "model_service_batching_on_2w": "#98df8a",
    "model_service_batching_off_1w": "#d62728",
    "model_service_batching_off_2w": "#ff9896",
}


def _error_bar(p: dict[str, Any] | None, name: str) -> tuple[float, float]:
    """Distance from the median down to the lowest round and up to the highest (0 with one round)."""
    if not p or p.get("rounds", 1) < 2 or name not in p.get("spread", {}):
        return 0.0, 0.0
    value = p["throughput_rps"] if name == "throughput_rps" else p["latency_ms"][name]
    lo, hi = p["spread"][name]
    return max(value - lo, 0.0), max(hi - value, 0.0)


def chart_load(results: dict[str, Any], out: Path) -> None:
    keys = [k for k in ORDER if any(p["key"] == k for p in results["load"])]
    clients = results["settings"]["clients"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        xs = [j + i * width for j in range(len(clients))]
        pts = [_point(results, key, c) for c in clients]
        for ax, name in ((ax1, "throughput_rps"), (ax2, "p99")):
            values = [
                (p["throughput_rps"] if name == "throughput_rps" else p["latency_ms"]["p99"]) if p else 0 for p in pts
            ]
            bars = [_error_bar(p, name) for p in pts]
            ax.bar(
                xs,
                values,
                width,
                yerr=[[b[0] for b in bars], [b[1] for b in bars]],
                capsize=2,
                label=LABELS[key],
                color=COLORS[key],
            )
    for ax, title, unit in (
        (ax1, "Throughput (successful responses), median; bars: lowest–highest round", "requests/s"),
        (ax2, "p99 latency, median; bars: lowest–highest round", "ms"),
    ):
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(clients))], [f"{c} client{'s' if c > 1 else ''}" for c in clients]
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    ax2.set_yscale("log")
    ax1.legend(fontsize=7, loc="upper left")
    fig.suptitle("Closed loop (wrk): /avaliar for the monolith and end to end, /predict for the model service alone")
    fig.tight_layout()
    fig.savefig(out / "load.png", dpi=110)
    plt.close(fig)


def chart_resources(results: dict[str, Any], out: Path) -> None:
    top = max(results["settings"]["clients"])
    keys = [k for k in ORDER if _point(results, k, top)]
    roles = ["monolith", "evaluation_api", "model_service"]
    role_colors = {"monolith": "#7f7f7f", "evaluation_api": "#1f77b4", "model_service": "#2ca02c"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    labelled: set[str] = set()
    for i, key in enumerate(keys):
        p = _point(results, key, top)
        assert p is not None
        bottom_cpu = bottom_mem = 0.0
        for role in roles:
            r = p["resources"].get(role)
            cpu = p.get("cpu_ms_per_request", {}).get(role)
            if not r or cpu is None:
                continue
            label = None if role in labelled else ROLE_NAMES[role]
            labelled.add(role)
            ax1.bar(i, cpu, bottom=bottom_cpu, color=role_colors[role], label=label)
            bottom_cpu += cpu
            ax2.bar(i, r["peak_rss_mib"], bottom=bottom_mem, color=role_colors[role], label=label)
            bottom_mem += r["peak_rss_mib"]
        lo_hi = p.get("spread", {}).get("cpu_ms_system")
        if lo_hi and p.get("rounds", 1) > 1:
            ax1.errorbar(
                i,
                bottom_cpu,
                yerr=[[max(bottom_cpu - lo_hi[0], 0)], [max(lo_hi[1] - bottom_cpu, 0)]],
                color="black",
                capsize=3,
            )
    for ax, title, unit in (
        (ax1, f"CPU per request at {top} clients (median; bar: lowest–highest round)", "CPU ms per request"),
        (ax2, f"Peak memory at {top} clients", "MiB"),
    ):
        ax.set_xticks(range(len(keys)), [SHORT[k] for k in keys], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
        if labelled:  # results from before CPU per request was recorded have nothing to label
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "resources.png", dpi=110)
    plt.close(fig)


def _events(ax: Any, events: dict[str, float], labels: dict[str, str]) -> None:
    for i, (key, label) in enumerate(labels.items()):
        if events.get(key) is not None:
            ax.axvline(events[key], color="black", linestyle="--", linewidth=0.8)
            # Alternate heights: events a fraction of a second apart would print over each other.
            ax.text(
                events[key],
                0.98 if i % 2 == 0 else 0.62,
                f" {label}",
                rotation=90,
                va="top",
                ha="left",
                fontsize=8,
                transform=ax.get_xaxis_transform(),
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
            )


def chart_fault(f: dict[str, Any], out: Path) -> None:
    series = f["timeline"]["per_second"]
    t = [s["t"] for s in series]
    ok = [s["ok"] for s in series]
    failed = [sum(s["errors"].values()) for s in series]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
    ax1.bar(t, ok, width=0.9, align="edge", color="#2ca02c", label="successful evaluations (201)")
    ax1.bar(
        t,
        failed,
        bottom=ok,
        width=0.9,
        align="edge",
        color="#d62728",
        label="failed evaluations (" + ", ".join(sorted({k for s in series for k in s["errors"]})) + ")",
    )
    ax1.set_ylabel("per second")
    ax1.legend(fontsize=8, loc="lower left")
    ax1.set_title(f"Fault isolation: model service killed under {f['rate_rps']:g} evaluations/s")
    mid = [x + 0.5 for x in t]  # bin t covers [t, t + 1)
    ax2.plot(mid, [s["p50_ms"] for s in series], marker=".", label="p50")
    ax2.plot(mid, [s["p99_ms"] for s in series], marker=".", label="p99")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency, ms (all responses)")
    ax2.legend(fontsize=8)
    for i, path in enumerate(PAGES_CHART):
        pts = f["timeline"]["pages"].get(path, {}).get("series", [])
        ax3.scatter(
            [p["t"] for p in pts], [i] * len(pts), s=12, c=["#2ca02c" if p["status"] == 200 else "#d62728" for p in pts]
        )
    ax3.set_yticks(range(len(PAGES_CHART)), PAGES_CHART)
    ax3.set_ylim(-0.5, len(PAGES_CHART) - 0.5)
    ax3.set_xlabel("seconds from the start of the load (green: 200, red: other)")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        _events(ax, f["events"], {"kill": "kill", "restart": "restart", "model_ready": "ready"} if ax is ax1 else {})
        for key in ("kill", "restart", "model_ready"):
            ax.axvline(f["events"][key], color="black", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(out / "fault.png", dpi=110)
    plt.close(fig)


PAGES_CHART = ["/", "/healthz", "/readyz"]


def chart_rollout(r: dict[str, Any], out: Path) -> None:
    vs = r["per_second_versions"]
    series = r["timeline"]["per_second"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    t = [v["t"] for v in vs]
    blue = [v["blue"] for v in vs]
    green = [v["green"] for v in vs]
    ax1.bar(t, blue, width=0.9, align="edge", color="#1f77b4", label=f"answered by blue ({r['versions']['blue']})")
    ax1.bar(
        t,
        green,
        bottom=blue,
        width=0.9,
        align="edge",
        color="#2ca02c",
        label=f"answered by green ({r['versions']['green']})",
    )
    failed_t = [s["t"] for s in series if s["errors"]]
    failed_n = [sum(s["errors"].values()) for s in series if s["errors"]]
    if failed_t:
        ax1.bar(failed_t, failed_n, width=0.9, align="edge", color="#d62728", label="failed")
    ax1.set_ylabel("evaluations per second")
    ax1.set_title(f"Model rollout under {r['rate_rps']:g} evaluations/s: {r['failed_requests']} failed requests")
    ax1.legend(fontsize=8, loc="lower left")
    mid = [s["t"] + 0.5 for s in series]  # bin t covers [t, t + 1)
    ax2.plot(mid, [s["p50_ms"] for s in series], marker=".", label="p50")
    ax2.plot(mid, [s["p99_ms"] for s in series], marker=".", label="p99")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency, ms")
    ax2.set_xlabel("seconds from the start of the load")
    ax2.legend(fontsize=8)
    labels = {
        "train": "train",
        "import": "import",
        "green_start": "start green",
        "green_ready": "green ready",
        "blue_stopped": "stop blue",
    }
    _events(ax1, r["events"], labels)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    for key in labels:
        ax2.axvline(r["events"][key], color="black", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(out / "rollout.png", dpi=110)
    plt.close(fig)


def chart_scaling(sc: dict[str, Any], out: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    roles = ["evaluation_api", "model_service", "load_generator"]
    role_colors = {"evaluation_api": "#1f77b4", "model_service": "#2ca02c", "load_generator": "#bcbd22"}
    for run, color in zip(sc["runs"], ("#1f77b4", "#ff7f0e"), strict=False):
        per = run["per_second"]
        if per:
            t0 = per[0]["t"]
            # wrk's first and last one-second bins are partial
            ax1.plot(
                [p["t"] - t0 for p in per][1:-1],
                [p["ok"] for p in per][1:-1],
                marker="o",
                color=color,
                label=f"model service {run['model_workers']} worker(s): {run['throughput_rps']:,.0f} req/s, "
                f"p99 {run['latency_ms']['p99']:.0f} ms",
            )
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("successful /avaliar per second")
    ax1.set_ylim(bottom=0)
    ax1.set_title(f"End to end, {sc['clients']} clients: only the model service's workers change")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(alpha=0.3)
    for i, run in enumerate(sc["runs"]):
        bottom = 0.0
        for role in roles:
            r = run["resources"].get(role)
            if r:
                ax2.bar(
                    i,
                    r["cpu_cores"],
                    bottom=bottom,
                    color=role_colors[role],
                    label=ROLE_NAMES[role] if i == 0 else None,
                )
                bottom += r["cpu_cores"]
    ax2.set_xticks(range(len(sc["runs"])), [f"{r['model_workers']} worker(s)" for r in sc["runs"]])
    ax2.set_ylabel("CPU, cores")
    ax2.set_title("Where the CPU goes")
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


BEGIN = (
    "<!-- BEGIN GENERATED by benchmarks/report.py from docs/results/results.json: "
    "edit the generator, not this block -->"
)
END = "<!-- END GENERATED -->"
# README's "Benchmarks": the change-control figures (change_control_facts), between these and END.
BEGIN_README = (
    "<!-- BEGIN GENERATED change-control figures, by benchmarks/report.py from docs/results/results.json: "
    "edit the generator, not this block -->"
)


def splice(doc: Path, results: dict[str, Any], *, images: str) -> bool:
    """Replace the generated block of doc (between BEGIN and END) with this run's summary; False if it has none."""
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return False
    summary = markdown(results, images=images).splitlines()
    # Below the document's own "## Results": drop the title, move every heading one level down.
    body = [("#" + line) if line.startswith("##") else line for line in summary[1:]]
    return _replace_block(doc, text, BEGIN, body)


def splice_readme(readme: Path, results: dict[str, Any]) -> bool:
    """Replace README's change-control block (between BEGIN_README and END); False if it has none."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN_README not in text:
        return False
    return _replace_block(readme, text, BEGIN_README, [f"- {f}" for f in change_control_facts(results)])


def _replace_block(doc: Path, text: str, begin: str, body: list[str]) -> bool:
    start = text.index(begin) + len(begin)
    end = text.index(END, start)
    doc.write_text(text[:start] + "\n" + "\n".join(body).strip() + "\n\n" + text[end:], encoding="utf-8")
    return True


def write(results: dict[str, Any], *, out_dir: Path, doc: Path | None = None, readme: Path | None = None) -> None:
    """summary.md and the charts, from results (also stored in results.json by the caller); with doc,
    also the generated block of that document (docs/ARCHITECTURE.md), its charts linked from results/;
    with readme, README's change-control block."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "goals": goals(results)}
    (out_dir / "summary.md").write_text(markdown(results), encoding="utf-8")
    if doc is not None:
        splice(doc, results, images=f"{out_dir.resolve().relative_to(doc.parent.resolve())}/")
    if readme is not None:
        splice_readme(readme, results)
    carried = results.get("carried_over", {})  # their charts are already those of their run
    if results["load"] and "load" not in carried:
        chart_load(results, out_dir)
        chart_resources(results, out_dir)
    ex = results.get("experiments", {})
    if ex.get("fault") and "skipped" not in ex["fault"] and "fault" not in carried:
        chart_fault(ex["fault"], out_dir)
    if ex.get("rollout") and "skipped" not in ex["rollout"] and "rollout" not in carried:
        chart_rollout(ex["rollout"], out_dir)
    if ex.get("scaling") and "skipped" not in ex["scaling"] and "scaling" not in carried:
        chart_scaling(ex["scaling"], out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DOCS / "results", help="where results.json is (default: docs/results)"
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="a document whose generated block to refresh (default: docs/ARCHITECTURE.md when --out is docs/results)",
    )
    args = parser.parse_args(argv)
    default = args.out.resolve() == (DOCS / "results").resolve()
    doc = args.doc or (ARCHITECTURE if default else None)
    results = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
    write(results, out_dir=args.out, doc=doc, readme=README if default else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
