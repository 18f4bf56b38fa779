"""The assignment's report, docs/RELATORIO.md, rendered from the measured results, and its PDF.

    python -m benchmarks.docs            # docs/RELATORIO.md from docs/results/{results,portfolio}.json
    python -m benchmarks.docs --pdf      # and docs/RELATORIO.pdf (make report)
    python -m benchmarks.docs --check    # exit 1 if the committed RELATORIO.md is not what the results render

Every figure in the report comes from the JSON through the template (docs/templates/RELATORIO.md.j2):
the template holds the words, this module the arithmetic (ratios within a round, medians, spreads)
and the pt-BR number format. A figure the results do not hold yet (the monolith with as many worker
processes as the new system has API processes, the stack measured through its gateway) renders as a
sentence saying it was not measured in this run, driven by the absence of its key.

The PDF is made with fpdf2 (already pinned for the statements' PDFs) from HTML that markdown-it-py
renders: both pure Python and offline, where pandoc would need a LaTeX engine and WeasyPrint
Debian's Pango. The fonts are the DejaVu faces matplotlib ships (accents, arrows, ×, ≥, –).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from benchmarks import stack
from benchmarks.report import busy_cores, rounds_of

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
TEMPLATES = DOCS / "templates"
TEMPLATE = "RELATORIO.md.j2"
REPORT = DOCS / "RELATORIO.md"
PDF = DOCS / "RELATORIO.pdf"
GATEWAY_CONF = ROOT / "deploy" / "nginx" / "gateway.conf"
MODEL_CARD = ROOT / "models" / "model_card.json"

# Keys of results.json's `load` points that issue 22 asks for and `make bench` may not have measured
# yet. The report says so, in words, while they are absent.
MONOLITH_WORKERS_KEY = "monolith_workers"  # the monolith under uvicorn with as many workers as API processes
STACK_KEY = stack.STACK_KEY  # /avaliar through make stack's gateway, PostgreSQL records (make bench-stack)
LIMITED_KEY = stack.LIMITED_KEY  # the same, the gateway on its production limits

# The systems' names in the report (results.json names them in English).
LABELS_PT = {
    "monolith": "monólito (o original)",
    MONOLITH_WORKERS_KEY: "monólito, um processo por processo de API",
    "end_to_end": "API de avaliação → serviço de modelo (make run)",
    STACK_KEY: "pilha pelo gateway, registros em PostgreSQL (make stack)",
    LIMITED_KEY: "a mesma pilha, gateway com os limites de produção",
    "model_service": "serviço de modelo sozinho (configuração padrão)",
}
ROLES_PT = {
    "monolith": "monólito",
    "evaluation_api": "API",
    "model_service": "serviço de modelo",
    "gateway": "gateway",
    "database": "PostgreSQL",
}


# --- pt-BR numbers -----------------------------------------------------------------------------------


def num(x: float | int | None, digits: int = 0) -> str:
    """1234567.891 -> '1.234.568' (digits=0) or '1.234.567,89' (digits=2): pt-BR separators."""
    if x is None:
        return "–"
    text = f"{x:,.{digits}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def faixa(s: dict[str, float], digits: int = 0, unit: str = "") -> str:
    """A median with the lowest and highest round: '1,97× (1,94–2,01)'."""
    m, lo, hi = (num(s[k], digits) for k in ("median", "min", "max"))
    if s["min"] == s["max"]:
        return f"{m}{unit}"
    return f"{m}{unit} ({lo}–{hi})"


def entre(s: dict[str, float], digits: int = 0, unit: str = "") -> str:
    """What held in every round: 'de 1,94× a 2,01×'."""
    return f"de {num(s['min'], digits)}{unit} a {num(s['max'], digits)}{unit}"


def _spread(xs: Iterable[float]) -> dict[str, float]:
    values = list(xs)
    return {"median": float(statistics.median(values)), "min": min(values), "max": max(values)}


# --- The figures the template quotes -----------------------------------------------------------------


def _system(results: dict[str, Any], key: str, clients: int) -> dict[str, Any] | None:
    """One system at one load, over its rounds: medians and spreads of what the report quotes."""
    rounds = list(rounds_of(results, key, clients).values())
    if not rounds:
        return None
    memory: dict[str, float] = {}
    for p in rounds:
        for role, r in p.get("resources", {}).items():
            if role != "load_generator":
                memory[role] = max(memory.get(role, 0.0), r["peak_rss_mib"])
    processes = {
        role: max(p["resources"][role].get("processes", 1) for p in rounds if role in p.get("resources", {}))
        for role in memory
    }
    return {
        "label": LABELS_PT.get(key, rounds[0]["system"]),
        "config": rounds[0].get("config", {}),
        "rounds": len(rounds),
        "rps": _spread(p["throughput_rps"] for p in rounds),
        "p50": _spread(p["latency_ms"]["p50"] for p in rounds),
        "p99": _spread(p["latency_ms"]["p99"] for p in rounds),
        "errors": sum(p["errors"]["total"] for p in rounds),
        "rate_limited": sum(int(p["errors"]["by_status"].get("429", 0)) for p in rounds),
        "duration_s": _spread(p["duration_s"] for p in rounds),
        "cpu_ms": _spread(p["cpu_ms_per_request"]["system"] for p in rounds),
        "busy_cores": _spread(busy_cores(p) for p in rounds),
        "rps_per_core": _spread(p["throughput_rps"] / max(busy_cores(p), 1e-9) for p in rounds),
        "memory_mib": memory,
        "memory_total_mib": sum(memory.values()),
        "processes": processes,
    }


def _versus(results: dict[str, Any], key: str, base: str, clients: int) -> dict[str, Any] | None:
    """key against base, round by round (the two ran minutes apart, in alternation)."""
    a, b = rounds_of(results, key, clients), rounds_of(results, base, clients)
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    pairs = [(a[r], b[r]) for r in common]
    per_core = [
        (x["throughput_rps"] / max(busy_cores(x), 1e-9)) / max(y["throughput_rps"] / max(busy_cores(y), 1e-9), 1e-9)
        for x, y in pairs
    ]
    return {
        "rounds": len(pairs),
        "ratio": _spread(x["throughput_rps"] / max(y["throughput_rps"], 1e-9) for x, y in pairs),
        "ratio_per_core": _spread(per_core),
        "p99_lower_rounds": sum(x["latency_ms"]["p99"] < y["latency_ms"]["p99"] for x, y in pairs),
        "errors": sum(x["errors"]["total"] for x, _ in pairs),
    }


def _gateway_limit(conf: str) -> dict[str, Any]:
    """The per-client limits on the API's paths, read from the gateway's configuration."""
    return dict(stack.gateway_limits(conf))


def _stack(results: dict[str, Any], top: int) -> dict[str, Any] | None:
    """The stack section (make bench-stack): its systems, its ratio to the monolith of its own rounds."""
    st = results.get("stack")
    if not st or not st.get("load"):
        return None
    clients = st["settings"]["clients"]
    return {
        "generated_at": st.get("generated_at", "?"),
        "machine": st.get("machine", {"git_commit": "?"}),
        "settings": st["settings"],
        "limits": st["settings"]["limits"],
        "s": {key: {c: _system(st, key, c) for c in clients} for key in ("monolith", STACK_KEY, LIMITED_KEY)},
        "vs_monolith": {c: _versus(st, STACK_KEY, "monolith", c) for c in clients},
        "one_client_p50_ratio": _versus_p50(st, STACK_KEY, "monolith", 1),
    }


def _versus_p50(results: dict[str, Any], key: str, base: str, clients: int) -> dict[str, float] | None:
    a, b = rounds_of(results, key, clients), rounds_of(results, base, clients)
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    return _spread(a[r]["latency_ms"]["p50"] / max(b[r]["latency_ms"]["p50"], 1e-9) for r in common)


def _portfolio(pf: dict[str, Any]) -> dict[str, Any]:
    cases = pf["cases"]
    out: dict[str, Any] = {
        "pf": pf,
        "cases": cases,
        "goals": pf.get("goals", {}),
        "upload": pf.get("upload_path"),
        "explanation": pf.get("explanation"),  # absent until a bench measures it: the report says so
    }
    local, spark = cases.get("local_parquet"), cases.get("spark_local2_parquet")
    if local and spark and "job_rows_per_s" in spark:
        local_rate = local["rows_per_s"]["median"]
        job_rate = spark["job_rows_per_s"]["median"]
        outside = spark["outside_job_s"]["median"]
        times = local_rate / job_rate
        # Executors (of the same 2 cores) a cluster needs for Spark's job rate to match one machine, if
        # the job rate scaled with them: what the report's "when a cluster pays off" works from.
        out["spark"] = {
            "local_over_job": times,
            "job_rate": job_rate,
            "outside_s": outside,
            "executors_to_match": math.ceil(times),
        }
    return out


def context(
    results: dict[str, Any], portfolio: dict[str, Any] | None, *, gateway_conf: str, card: dict[str, Any]
) -> dict[str, Any]:
    """Everything the template quotes, computed from the results, the model's card (what training
    measured) and the gateway's own limit."""
    from benchmarks import report  # matplotlib, imported only when rendering

    settings = results["settings"]
    top = max(settings["clients"])
    g = report.goals(results)
    systems = {
        key: {c: _system(results, key, c) for c in settings["clients"]}
        for key in ("monolith", "end_to_end", "model_service", MONOLITH_WORKERS_KEY)
    }
    # The stack's points are its own section's, measured against the monolith of its own rounds.
    st = _stack(results, top)
    systems[STACK_KEY] = {c: st["s"][STACK_KEY].get(c) if st else None for c in settings["clients"]}
    ex = results.get("experiments", {})
    fault = ex.get("fault") if ex.get("fault") and "skipped" not in ex["fault"] else None
    if fault:
        ev = fault["events"]
        fault = {**fault, "harness_wait_s": ev["restart"] - ev["kill"]}
    scaling = ex.get("scaling") if ex.get("scaling") and "skipped" not in ex["scaling"] else None
    if scaling:
        scaling = {
            **scaling,
            "rows": [
                {
                    "workers": run["model_workers"],
                    "rps": run["throughput_rps"],
                    "p99": run["latency_ms"]["p99"],
                    "api_processes": run["resources"]["evaluation_api"].get("processes", 1),
                    "api_cores": run["resources"]["evaluation_api"]["cpu_cores"],
                    "busy_cores": run["machine_cpu"]["busy_cores"],
                }
                for run in scaling["runs"]
            ],
        }
    return {
        "results": results,
        "card": card,
        "machine": results["machine"],
        "settings": settings,
        "top": top,
        "goals": g,
        "goal": {
            "e2e_ratio": report.GOAL_E2E_VS_MONOLITH,
            "model_ratio": report.GOAL_MODEL_VS_MONOLITH,
            "one_client_p50_ms": report.GOAL_ONE_CLIENT_P50_MS,
            "bulk": report.GOAL_BULK,
            "explained_ratio": report.GOAL_EXPLAINED_THROUGHPUT,
            "explanation_ms": report.GOAL_EXPLANATION_MS,
        },
        "s": systems,
        "vs": {
            "e2e_monolith": _versus(results, "end_to_end", "monolith", top),
            "model_monolith": _versus(results, "model_service", "monolith", top),
            "e2e_monolith_workers": _versus(results, "end_to_end", MONOLITH_WORKERS_KEY, top),
            "stack_monolith": st["vs_monolith"].get(top) if st else None,
        },
        "variants": {
            key: _system(results, key, top) for key in ("model_service_batching_on_1w", "model_service_batching_off_1w")
        },
        "bulk": next((p for p in results.get("bulk", {}).get("paths", []) if p.get("headline")), None),
        "fault": fault,
        "rollout": ex.get("rollout") if ex.get("rollout") and "skipped" not in ex["rollout"] else None,
        "scaling": scaling,
        # Change control under load (report.challenger_cost, experiments.promotion); None: not measured.
        "challenger": g.get("challenger_cost"),
        "promotion": ex.get("promotion") if ex.get("promotion") and "skipped" not in ex["promotion"] else None,
        "portfolio": _portfolio(portfolio) if portfolio else None,
        "gateway": _gateway_limit(gateway_conf),
        "stack": st,
        "roles": ROLES_PT,
        "keys": {
            "monolith_workers": MONOLITH_WORKERS_KEY,
            "stack": STACK_KEY,
            "limited": LIMITED_KEY,
            "challenger": report.CHALLENGER_KEY,
        },
    }


# --- Rendering ---------------------------------------------------------------------------------------


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,  # a key the results lack is an error, never an empty figure
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )
    filters: dict[str, Callable[..., str]] = {"num": num, "faixa": faixa, "entre": entre}
    env.filters.update(filters)
    env.globals.update(filters)
    return env


def load(results_dir: Path = RESULTS) -> tuple[dict[str, Any], dict[str, Any] | None]:
    results = json.loads((results_dir / "results.json").read_text(encoding="utf-8"))
    pf_path = results_dir / "portfolio.json"
    portfolio = json.loads(pf_path.read_text(encoding="utf-8")) if pf_path.exists() else results.get("portfolio")
    return results, portfolio


def render(results_dir: Path = RESULTS, templates: Path = TEMPLATES) -> str:
    """RELATORIO.md's text from the results in results_dir."""
    results, portfolio = load(results_dir)
    ctx = context(
        results,
        portfolio,
        gateway_conf=GATEWAY_CONF.read_text(encoding="utf-8"),
        card=json.loads(MODEL_CARD.read_text(encoding="utf-8")),
    )
    return environment(templates).get_template(TEMPLATE).render(**ctx)


def _fonts() -> Path:
    """matplotlib's own copy of the DejaVu fonts (found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib (requirements/dev.txt) is needed for the PDF's fonts")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


def _html(markdown_text: str) -> str:
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(markdown_text)
    # fpdf2's HTML renderer sizes table columns itself; give tables a border and full width.
    html = html.replace("<table>", '<table border="1" width="100%">')
    # ... and takes only text inside a cell: drop the inline tags (code, emphasis) there.
    html = re.sub(
        r"<(td|th)([^>]*)>(.*?)</\1>",
        lambda m: f"<{m.group(1)}{m.group(2)}>{re.sub(r'</?(code|em|strong)>', '', m.group(3))}</{m.group(1)}>",
        html,
        flags=re.DOTALL,
    )
    # Images are the charts in results/, next to the document: make their paths absolute.
    return re.sub(r'<img src="(results/[^"]+)"', lambda m: f'<img src="{DOCS / m.group(1)}" width="480"', html)


def pdf(markdown_text: str, out: Path, *, created: datetime) -> None:
    """The report as a PDF (A4), from its Markdown; created is its date (the results', so that the
    same results give the same file)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    fonts = _fonts()
    doc = FPDF(format="A4")
    doc.set_title("Relatório: arquitetura do sistema de elegibilidade de cartão de crédito")
    doc.set_lang("pt-BR")
    doc.set_creator("benchmarks/docs.py (fpdf2)")
    doc.set_creation_date(created)
    for style, name in (("", "DejaVuSans"), ("B", "DejaVuSans-Bold"), ("I", "DejaVuSans-Oblique")):
        doc.add_font("dejavu", style, str(fonts / f"{name}.ttf"))
    doc.add_font("dejavu", "BI", str(fonts / "DejaVuSans-BoldOblique.ttf"))
    doc.add_font("dejavumono", "", str(fonts / "DejaVuSansMono.ttf"))
    doc.set_margins(18, 16, 18)
    doc.set_auto_page_break(True, margin=16)
    doc.add_page()
    doc.set_font("dejavu", size=10)
    doc.write_html(
        _html(markdown_text),
        font_family="dejavu",
        table_line_separators=True,
        tag_styles={
            "h1": FontFace(emphasis="BOLD", size_pt=18),
            "h2": FontFace(emphasis="BOLD", size_pt=14),
            "h3": FontFace(emphasis="BOLD", size_pt=11.5),
            "code": FontFace(family="dejavumono"),
            "pre": FontFace(family="dejavumono", size_pt=8.5),
        },
    )
    out.write_bytes(bytes(doc.output()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results.json and portfolio.json are")
    parser.add_argument("--out", type=Path, default=REPORT, help="the Markdown to write (default docs/RELATORIO.md)")
    parser.add_argument("--pdf", nargs="?", type=Path, const=PDF, default=None, help="also write the PDF")
    parser.add_argument("--check", action="store_true", help="only compare --out with what the results render")
    args = parser.parse_args(argv)
    text = render(args.results)
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            print(f"{args.out} is not what {args.results} renders: run `python -m benchmarks.docs`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    if args.pdf is not None:
        results, _ = load(args.results)
        pdf(text, args.pdf, created=datetime.fromisoformat(results["generated_at"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
