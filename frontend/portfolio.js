// The "Carteira" page: upload a portfolio (POST /api/v1/portfolio-runs), follow the run with a progress
// bar (GET .../{id}), then the summary as charts drawn here in SVG (decisions by segment as stacked
// bars; with a candidate policy, the swap matrix as a heat map) and the downloads (CSV, Parquet).
// Requests carry the session's in-memory token (session.js), so a download is fetched and handed to
// the browser as a file, never a plain link.
"use strict";

(() => {
  const RUNS_URL = "/api/v1/portfolio-runs";
  const POLL_MS = 500;
  const SVG = "http://www.w3.org/2000/svg";
  const DECISIONS = ["approved", "review", "denied", "invalid"];
  const DECISION_LABELS = { approved: "Aprovado", review: "Em análise", denied: "Negado", invalid: "Inválido" };
  const DECISION_COLORS = { approved: "#1a7f37", review: "#b58105", denied: "#c62828", invalid: "#6e7781" };
  const SEGMENT_LABELS = {
    high_limit_revolvers: "Limite alto, rotativo",
    cash_advance_users: "Usuários de saque",
    least_active: "Pouco ativos",
    credit_purchasers_good_payers: "Compradores bons pagadores",
    low_limit_light_users: "Limite baixo, uso leve",
  };
  const STATUS_LABELS = {
    queued: "Na fila: aguardando o processamento.",
    running: "Processando…",
    succeeded: "Concluído.",
    failed: "A execução falhou.",
  };
  const number = new Intl.NumberFormat("pt-BR");

  const $ = (id) => document.getElementById(id);
  const form = $("portfolio-form");
  const fileInput = $("portfolio-file");
  const candidateInput = $("portfolio-candidate");
  const submit = $("portfolio-submit");
  const message = $("portfolio-message");
  const runBox = $("portfolio-run");
  const statusLine = $("portfolio-status");
  const bar = $("portfolio-progress");
  const errorBox = $("portfolio-error");
  const summaryBox = $("portfolio-summary");

  let timer = null;
  let current = null;

  function show(el, text) {
    el.textContent = text || "";
    el.hidden = !text;
  }

  function stopPolling() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function reset() {
    stopPolling();
    current = null;
    runBox.hidden = true;
    summaryBox.hidden = true;
    show(errorBox, "");
    show(message, "");
    show($("error-portfolio-file"), "");
    show($("error-portfolio-candidate"), "");
  }

  async function answerOf(response) {
    try {
      return await response.json();
    } catch {
      return {};
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    reset();
    const file = fileInput.files[0];
    if (!file) {
      show($("error-portfolio-file"), "Escolha o arquivo da carteira.");
      fileInput.focus();
      return;
    }
    const body = new FormData();
    body.append("file", file);
    if (candidateInput.files[0]) body.append("candidate_policy", candidateInput.files[0]);
    submit.disabled = true;
    show(message, "Enviando o arquivo…");
    let response;
    try {
      response = await window.Session.fetch(RUNS_URL, { method: "POST", body });
    } catch {
      show(message, "Não foi possível enviar o arquivo. Verifique a conexão e tente novamente.");
      return;
    } finally {
      submit.disabled = false;
    }
    const answer = await answerOf(response);
    if (response.status === 401) {
      show(message, "");
      window.Session.expired();
      return;
    }
    if (response.status === 422) {
      show(message, "");
      for (const error of answer.errors || []) {
        const target = error.field === "candidate_policy" ? "error-portfolio-candidate" : "error-portfolio-file";
        show($(target), error.message);
      }
      return;
    }
    if (response.status !== 202) {
      show(message, answer.message || `Não foi possível enviar a carteira (erro ${response.status}).`);
      return;
    }
    show(message, "");
    current = answer.id;
    render(answer);
    schedule();
  });

  function schedule() {
    stopPolling();
    timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const id = current;
    if (!id) return;
    let response;
    try {
      response = await window.Session.fetch(`${RUNS_URL}/${id}`);
    } catch {
      schedule(); // a dropped connection: try again
      return;
    }
    if (id !== current) return;
    if (response.status === 401) {
      stopPolling();
      window.Session.expired();
      return;
    }
    if (!response.ok) {
      show(errorBox, `Não foi possível consultar a execução (erro ${response.status}).`);
      return;
    }
    const run = await response.json();
    render(run);
    if (run.status === "queued" || run.status === "running") schedule();
  }

  function render(run) {
    runBox.hidden = false;
    runBox.querySelector('[data-testid="portfolio-run-id"]').textContent = run.id;
    runBox.dataset.status = run.status;
    let line = STATUS_LABELS[run.status] || run.status;
    if (run.status === "running" && run.rows_total) {
      line = `Processando: ${number.format(run.rows_done)} de ${number.format(run.rows_total)} clientes.`;
    }
    statusLine.textContent = line;
    if (run.status === "succeeded") {
      bar.max = 1;
      bar.value = 1;
    } else if (run.rows_total) {
      bar.max = run.rows_total;
      bar.value = run.rows_done;
    } else {
      bar.removeAttribute("value"); // indeterminate until the worker knows the size
    }
    show(errorBox, run.status === "failed" ? `Motivo: ${run.error || "desconhecido"}` : "");
    if (run.status === "succeeded" && run.summary) renderSummary(run);
  }

  function renderSummary(run) {
    const summary = run.summary;
    summaryBox.hidden = false;
    summaryBox.querySelector('[data-testid="portfolio-rows"]').textContent = number.format(summary.rows_total);
    summaryBox.querySelector('[data-testid="portfolio-invalid"]').textContent = number.format(summary.rows_invalid);
    summaryBox.querySelector('[data-testid="portfolio-policy"]').textContent = summary.policy_version_b
      ? `${summary.policy_version} → ${summary.policy_version_b}`
      : summary.policy_version;
    const bySegment = { ...summary.by_segment_decision };
    if (summary.rows_invalid) bySegment.__invalid = { invalid: summary.rows_invalid };
    $("chart-segments").replaceChildren(stackedBars(bySegment));
    $("swap-block").hidden = !summary.swap;
    $("chart-swap").replaceChildren(summary.swap ? heatMap(summary.swap) : "");
    $("download-csv").onclick = () => download(run, "csv");
    $("download-parquet").onclick = () => download(run, "parquet");
  }

  function el(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** One horizontal bar per segment, split by decision; a legend below. */
  function stackedBars(bySegment) {
    const keys = Object.keys(bySegment);
    const totals = keys.map((k) => DECISIONS.reduce((sum, d) => sum + (bySegment[k][d] || 0), 0));
    const max = Math.max(1, ...totals);
    const labelW = 210, barW = 440, rowH = 30, width = labelW + barW + 90, height = keys.length * rowH + 40;
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
      "aria-label": "Decisões por perfil de cliente", "data-testid": "segments-svg",
    });
    keys.forEach((key, i) => {
      const y = i * rowH + 4;
      const label = key === "__invalid" ? "Linhas inválidas" : SEGMENT_LABELS[key] || key;
      svg.append(el("text", { x: labelW - 8, y: y + 16, "text-anchor": "end", "font-size": 13 }, label));
      let x = labelW;
      for (const decision of DECISIONS) {
        const count = bySegment[key][decision] || 0;
        if (!count) continue;
        const w = (count / max) * barW;
        const rect = el("rect", {
          x, y, width: Math.max(w, 1), height: rowH - 10, fill: DECISION_COLORS[decision],
          "data-segment": key, "data-decision": decision, "data-count": count,
        });
        rect.append(el("title", {}, `${label}: ${DECISION_LABELS[decision]} ${number.format(count)}`));
        svg.append(rect);
        x += w;
      }
      svg.append(el("text", { x: x + 6, y: y + 16, "font-size": 12 }, number.format(totals[i])));
    });
    let lx = labelW;
    for (const decision of DECISIONS) {
      const ly = keys.length * rowH + 16;
      svg.append(el("rect", { x: lx, y: ly, width: 12, height: 12, fill: DECISION_COLORS[decision] }));
      svg.append(el("text", { x: lx + 16, y: ly + 11, "font-size": 12 }, DECISION_LABELS[decision]));
      lx += 110;
    }
    return svg;
  }

  /** Rows: the current policy's decision; columns: the candidate's. Darker = more customers. */
  function heatMap(swap) {
    const cell = 90, labelW = 120, top = 44;
    const size = labelW + DECISIONS.length * cell + 10;
    const max = Math.max(1, ...DECISIONS.flatMap((a) => DECISIONS.map((b) => swap[a]?.[b] || 0)));
    const svg = el("svg", {
      viewBox: `0 0 ${size} ${top + DECISIONS.length * cell + 10}`, width: "100%", role: "img",
      "aria-label": "Matriz de mudança de decisão: linhas, política atual; colunas, política candidata",
      "data-testid": "swap-svg",
    });
    svg.append(el("text", { x: labelW + (DECISIONS.length * cell) / 2, y: 14, "text-anchor": "middle", "font-size": 12 },
      "Política candidata →"));
    DECISIONS.forEach((b, j) => {
      svg.append(el("text", { x: labelW + j * cell + cell / 2, y: top - 8, "text-anchor": "middle", "font-size": 12 },
        DECISION_LABELS[b]));
    });
    DECISIONS.forEach((a, i) => {
      svg.append(el("text", { x: labelW - 8, y: top + i * cell + cell / 2 + 4, "text-anchor": "end", "font-size": 12 },
        DECISION_LABELS[a]));
      DECISIONS.forEach((b, j) => {
        const count = swap[a]?.[b] || 0;
        const share = count / max;
        const rect = el("rect", {
          x: labelW + j * cell, y: top + i * cell, width: cell - 2, height: cell - 2,
          fill: "#1f4e99", "fill-opacity": count ? 0.08 + 0.92 * share : 0.03,
          "data-from": a, "data-to": b, "data-count": count,
        });
        rect.append(el("title", {}, `${DECISION_LABELS[a]} → ${DECISION_LABELS[b]}: ${number.format(count)}`));
        svg.append(rect);
        svg.append(el("text", {
          x: labelW + j * cell + cell / 2, y: top + i * cell + cell / 2 + 5, "text-anchor": "middle",
          "font-size": 14, fill: share > 0.55 ? "#ffffff" : "#1b1f24",
        }, number.format(count)));
      });
    });
    return svg;
  }

  async function download(run, format) {
    const link = run.result && run.result[format];
    if (!link) return;
    show(message, "");
    let response;
    try {
      response = await window.Session.fetch(link);
    } catch {
      show(message, "Não foi possível baixar o arquivo. Tente novamente.");
      return;
    }
    if (response.status === 401) {
      window.Session.expired();
      return;
    }
    if (!response.ok) {
      const answer = await answerOf(response);
      show(message, answer.message || `Não foi possível baixar o arquivo (erro ${response.status}).`);
      return;
    }
    const url = window.URL.createObjectURL(await response.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `carteira-${run.id}.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => window.URL.revokeObjectURL(url), 60000);
  }

  window.addEventListener("session:signed-out", () => {
    reset();
    form.reset();
  });
})();
