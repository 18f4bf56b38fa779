// Human review of automated decisions (LGPD art. 20): the "Fila de revisão" page (open cases, oldest
// first, with their age) and the case page (the customer's figures, the segment and its description,
// the reasons, the distances to each segment as a small chart, the history, and the decision with its
// justification). For reviewers (who decide) and auditors (who only read). Requests go through
// Session.fetch (frontend/session.js): the token stays in memory. No framework, no build step.
"use strict";

(() => {
  const QUEUE_URL = "/api/v1/reviews";
  const PAGE_SIZE = 20;
  const MIN_JUSTIFICATION = 20; // evaluation_api/reviews/rules.py MIN_JUSTIFICATION
  const MAX_JUSTIFICATION = 2000;
  const DECISIONS = window.Labels.DECISIONS;
  const FINAL = { approved: "Aprovado", denied: "Negado" };
  const TRIGGERS = { automatic: "Automática (decisão em análise)", requested: "Pedido de revisão" };
  const ACTIONS = { opened: "Caso aberto", decided: "Decisão registrada", answered: "Resposta registrada" };
  const KINDS = { review: "Revisão", information: "Pedido de informação" };
  const SEGMENT_NAMES = window.Labels.SEGMENTS; // frontend/labels.js
  const FIGURES = [
    ["balance", "Saldo devedor"],
    ["purchases", "Compras"],
    ["cash_advance", "Saques / adiantamentos"],
    ["credit_limit", "Limite de crédito"],
    ["payments", "Pagamentos"],
  ];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const queuePage = $("queue");
  const casePage = $("case");
  const navQueue = $("nav-queue");
  const brl = new Intl.NumberFormat("pt-BR", { style: "currency", currency: "BRL" });
  const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "short" });
  const decimal = new Intl.NumberFormat("pt-BR", { maximumFractionDigits: 2 });

  let roles = [];
  let offset = 0;
  let currentCase = null;

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  function when(iso) {
    const moment = new Date(String(iso || "").replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(moment.getTime()) ? "" : dateTime.format(moment);
  }

  /** "há 3 dias", "há 2 h", "há 5 min", "agora há pouco": how long a case has waited. */
  function age(seconds) {
    const s = Math.max(0, Number(seconds) || 0);
    if (s < 60) return "agora há pouco";
    if (s < 3600) return `há ${Math.floor(s / 60)} min`;
    if (s < 86400) return `há ${Math.floor(s / 3600)} h`;
    const days = Math.floor(s / 86400);
    return `há ${days} ${days === 1 ? "dia" : "dias"}`;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  // ------------------------------------------------------------------ pages

  function showOwn(page) {
    // Hide the session's pages and show one of ours (session.js shows its own on its nav buttons).
    window.Session.showPage(page);
    queuePage.hidden = page !== "queue";
    casePage.hidden = page !== "case";
    if (page === "queue" || page === "case") navQueue.setAttribute("aria-current", "page");
  }

  window.addEventListener("session:page", (event) => {
    if (event.detail !== "queue" && event.detail !== "case") {
      queuePage.hidden = true;
      casePage.hidden = true;
      navQueue.removeAttribute("aria-current");
    }
  });

  window.addEventListener("session:signed-in", (event) => {
    roles = (event.detail && event.detail.roles) || [];
    navQueue.hidden = !roles.some((role) => role === "reviewer" || role === "auditor");
  });

  window.addEventListener("session:signed-out", () => {
    roles = [];
    navQueue.hidden = true;
    currentCase = null;
  });

  navQueue.addEventListener("click", () => {
    offset = 0;
    openQueue();
  });

  $("queue-previous").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    openQueue();
  });

  $("queue-next").addEventListener("click", () => {
    offset += PAGE_SIZE;
    openQueue();
  });

  $("case-back").addEventListener("click", () => openQueue());

  /** A request through the session; null when it failed (the message is shown in `messageEl`). */
  async function call(url, messageEl, options) {
    let response;
    try {
      response = await window.Session.fetch(url, options);
    } catch {
      show(messageEl, "Não foi possível falar com o serviço. Tente novamente em alguns segundos.");
      return null;
    }
    if (response.status === 401) {
      window.Session.expired();
      return null;
    }
    return response;
  }

  /** The legal clock in words: days left until the due date (negative: overdue). */
  function dueText(days) {
    const n = Number(days);
    if (!Number.isFinite(n)) return "";
    if (n < 0) return `Atrasado há ${-n} ${n === -1 ? "dia" : "dias"}`;
    if (n === 0) return "Vence hoje";
    return `${n} ${n === 1 ? "dia restante" : "dias restantes"}`;
  }

  function dueState(days) {
    return days < 0 ? "overdue" : days <= 3 ? "soon" : "ok";
  }

  // ------------------------------------------------------------------ the queue

  async function openQueue() {
    showOwn("queue");
    $("queue-title").focus();
    const message = $("queue-message");
    show(message, "Carregando…");
    const url = `${QUEUE_URL}?status=open&limit=${PAGE_SIZE}&offset=${offset}`;
    const response = await call(url, message);
    if (!response) return;
    if (!response.ok) {
      show(message, `Não foi possível carregar a fila (erro ${response.status}).`);
      return;
    }
    const page = await response.json();
    const items = Array.isArray(page.items) ? page.items : [];
    $("queue-rows").replaceChildren(...items.map(queueRow));
    show(message, "");
    $("queue-table").hidden = items.length === 0;
    $("queue-empty").hidden = items.length !== 0;
    const total = Number(page.total) || 0;
    $("queue-count").textContent =
      total === 0 ? "" : `${total} ${total === 1 ? "caso aberto" : "casos abertos"}, os de prazo mais curto primeiro.`;
    $("queue-previous").hidden = offset === 0;
    $("queue-next").hidden = offset + items.length >= total;
  }

  function queueRow(item) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    tr.dataset.evaluationId = item.evaluation_id;
    const ageCell = cell(age(item.age_s));
    ageCell.title = when(item.opened_at);
    ageCell.dataset.testid = "queue-age";
    const dueCell = cell(dueText(item.days_left));
    dueCell.title = `Prazo: ${when(item.due_at)}`;
    dueCell.dataset.testid = "queue-due";
    dueCell.dataset.due = dueState(item.days_left);
    tr.dataset.kind = item.kind || "review";
    tr.append(
      dueCell,
      cell(KINDS[item.kind] || item.kind || ""),
      ageCell,
      cell(DECISIONS[item.automated_decision] || item.automated_decision || ""),
      cell(SEGMENT_NAMES[item.segment] || item.segment || ""),
      cell(TRIGGERS[item.trigger] || item.trigger || ""),
      cell(item.reason || ""),
    );
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-secondary btn-small";
    button.textContent = "Abrir caso";
    button.dataset.testid = "open-case";
    button.addEventListener("click", () => openCase(item.id));
    action.append(button);
    tr.append(action);
    return tr;
  }

  // ------------------------------------------------------------------ one case

  async function openCase(caseId) {
    showOwn("case");
    const message = $("case-message");
    show(message, "Carregando…");
    $("case-body").hidden = true;
    const response = await call(`${QUEUE_URL}/${encodeURIComponent(caseId)}`, message);
    if (!response) return;
    if (!response.ok) {
      show(message, `Não foi possível abrir o caso (erro ${response.status}).`);
      return;
    }
    const detail = await response.json();
    show(message, "");
    renderCase(detail);
    $("case-body").hidden = false;
    $("case-title").focus();
  }

  function renderCase(detail) {
    currentCase = detail.case;
    const evaluation = detail.evaluation;
    const input = evaluation.input || {};

    $("case-name").textContent = evaluation.anonymized ? "Dados pessoais anonimizados" : input.name || "";
    $("case-customer-id").textContent = input.customer_id || "—";
    $("case-evaluation-id").textContent = evaluation.id;
    $("case-evaluated-at").textContent = when(evaluation.evaluated_at);
    $("case-automated").textContent = DECISIONS[evaluation.decision] || evaluation.decision;
    $("case-automated").dataset.decision = evaluation.decision;

    $("case-figures").replaceChildren(
      ...FIGURES.map(([key, label]) => {
        const div = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.textContent = typeof input[key] === "number" ? brl.format(input[key]) : "";
        dd.dataset.testid = `case-figure-${key}`;
        div.append(dt, dd);
        return div;
      }),
    );

    const segment = evaluation.segment || {};
    $("case-segment-name").textContent = SEGMENT_NAMES[segment.key] || segment.key || "";
    $("case-segment-description").textContent = segment.description || "";

    $("case-reasons").replaceChildren(
      ...(evaluation.reasons || []).map((reason) => {
        const li = document.createElement("li");
        li.textContent = reason.message || reason.code;
        li.dataset.code = reason.code || "";
        return li;
      }),
    );

    drawDistances($("case-chart"), evaluation.distances || [], detail.segments || [], segment.id);
    renderHistory(detail.case);
    renderDecision(detail.case);
  }

  /** Horizontal bars, one per segment: the customer's distance to its centre. Shorter = more alike. */
  function drawDistances(container, distances, segments, chosenId) {
    const rowHeight = 30;
    const labelWidth = 250;
    const barMax = 300;
    const width = labelWidth + barMax + 70;
    const height = rowHeight * distances.length + 10;
    const largest = Math.max(...distances.map(Number).filter(Number.isFinite), 1e-9);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", "100%");
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "distance-chart");
    svg.dataset.testid = "distance-chart";
    const summary = [];
    distances.forEach((value, index) => {
      const seg = segments.find((s) => s.id === index) || { key: String(index) };
      const name = SEGMENT_NAMES[seg.key] || seg.key;
      const y = 5 + index * rowHeight;
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", "0");
      label.setAttribute("y", String(y + 19));
      label.setAttribute("class", "chart-label");
      label.textContent = name;
      const bar = document.createElementNS(SVG, "rect");
      const length = Math.max(2, (Number(value) / largest) * barMax);
      bar.setAttribute("x", String(labelWidth));
      bar.setAttribute("y", String(y + 5));
      bar.setAttribute("width", length.toFixed(1));
      bar.setAttribute("height", "18");
      bar.setAttribute("rx", "3");
      bar.setAttribute("class", index === chosenId ? "chart-bar chart-bar-chosen" : "chart-bar");
      bar.dataset.segment = seg.key;
      const figure = document.createElementNS(SVG, "text");
      figure.setAttribute("x", String(labelWidth + length + 6));
      figure.setAttribute("y", String(y + 19));
      figure.setAttribute("class", "chart-value");
      figure.textContent = decimal.format(Number(value));
      svg.append(label, bar, figure);
      summary.push(`${name}: ${decimal.format(Number(value))}${index === chosenId ? " (perfil atribuído)" : ""}`);
    });
    svg.setAttribute("aria-label", `Distância a cada perfil, menor é mais parecido. ${summary.join("; ")}.`);
    container.replaceChildren(svg);
  }

  function renderHistory(reviewCase) {
    $("case-history").replaceChildren(
      ...(reviewCase.history || []).map((entry) => {
        const li = document.createElement("li");
        const head = document.createElement("strong");
        const final = entry.decision ? ` — ${FINAL[entry.decision] || entry.decision}` : "";
        head.textContent = `${when(entry.at)} · ${ACTIONS[entry.action] || entry.action} por ${entry.actor}${final}`;
        const note = document.createElement("p");
        note.textContent = entry.note;
        li.append(head, note);
        return li;
      }),
    );
  }

  function renderDecision(reviewCase) {
    const closed = reviewCase.status === "closed";
    const information = reviewCase.kind === "information";
    const canDecide = roles.includes("reviewer") && !closed;
    $("case-title").textContent = information ? "Pedido de informação" : "Caso de revisão";
    if (closed) {
      $("case-status").textContent = information
        ? `Respondido (por ${reviewCase.reviewer})`
        : `Decidido: ${FINAL[reviewCase.final_decision] || reviewCase.final_decision} (por ${reviewCase.reviewer})`;
    } else {
      $("case-status").textContent = information ? "Aguardando resposta" : "Aguardando decisão";
    }
    $("case-status").dataset.status = reviewCase.status;
    const due = $("case-due");
    due.textContent = closed ? "" : `Prazo: ${when(reviewCase.due_at)} — ${dueText(reviewCase.days_left)}`;
    due.dataset.due = closed ? "" : dueState(reviewCase.days_left);
    $("decision-form").hidden = !canDecide || information;
    $("answer-form").hidden = !canDecide || !information;
    $("answer-form").reset();
    show($("error-answer"), "");
    show($("answer-message"), "");
    $("decision-form").reset();
    clearErrors();
    show($("decision-message"), "");
    updateCounter();
  }

  /** POST a closing step of the current case (its decision, or an information request's answer); on
   * success the case is shown closed with `done` in `messageEl`. Null when the request failed (said). */
  async function closeCase(step, payload, messageEl, done) {
    const response = await call(`${QUEUE_URL}/${encodeURIComponent(currentCase.id)}/${step}`, messageEl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
    });
    if (!response) return null;
    const answer = await response.json().catch(() => null);
    if (response.ok && answer) {
      currentCase = answer;
      renderHistory(answer);
      renderDecision(answer);
      show(messageEl, done);
      $("case-status").focus();
    }
    return { response, answer };
  }

  // ------------------------------------------------------------------ the decision

  const justification = $("justification");

  function updateCounter() {
    const length = justification.value.trim().length;
    $("justification-count").textContent =
      length < MIN_JUSTIFICATION
        ? `${length} de no mínimo ${MIN_JUSTIFICATION} caracteres`
        : `${length} caracteres`;
  }

  justification.addEventListener("input", updateCounter);

  function fieldError(field, message) {
    const el = $(`error-${field}`);
    show(el, message);
    const input = field === "justification" ? justification : $("decision-approved");
    input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function clearErrors() {
    fieldError("justification", "");
    fieldError("decision", "");
  }

  $("decision-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const chosen = document.querySelector('input[name="final-decision"]:checked');
    const text = justification.value.trim();
    let invalid = false;
    if (!chosen) {
      fieldError("decision", "Escolha aprovar ou negar.");
      invalid = true;
    }
    if (text.length < MIN_JUSTIFICATION) {
      fieldError("justification", `A justificativa precisa ter pelo menos ${MIN_JUSTIFICATION} caracteres.`);
      invalid = true;
    } else if (text.length > MAX_JUSTIFICATION) {
      fieldError("justification", `A justificativa pode ter no máximo ${MAX_JUSTIFICATION} caracteres.`);
      invalid = true;
    }
    if (invalid) {
      (chosen ? justification : $("decision-approved")).focus();
      return;
    }
    const button = $("decision-submit");
    button.disabled = true;
    const message = $("decision-message");
    try {
      const result = await closeCase("decision", { decision: chosen.value, justification: text }, message, "Decisão registrada.");
      if (!result || (result.response.ok && result.answer)) return;
      const { response, answer } = result;
      if (response.status === 422 && answer && Array.isArray(answer.errors)) {
        for (const error of answer.errors) fieldError(error.field === "decision" ? "decision" : "justification", error.message);
      } else {
        const text409 = "Este caso já foi decidido por outra pessoa. Volte à fila para ver os casos abertos.";
        show(
          message,
          response.status === 409
            ? text409
            : (answer && answer.message) || `Não foi possível registrar a decisão (erro ${response.status}).`,
        );
      }
    } finally {
      button.disabled = false;
    }
  });

  // ------------------------------------------------------------------ an information request's answer

  $("answer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("answer-text").value.trim();
    if (text.length < MIN_JUSTIFICATION) {
      show($("error-answer"), `A resposta precisa ter pelo menos ${MIN_JUSTIFICATION} caracteres.`);
      $("answer-text").setAttribute("aria-invalid", "true");
      $("answer-text").focus();
      return;
    }
    show($("error-answer"), "");
    $("answer-text").setAttribute("aria-invalid", "false");
    const button = $("answer-submit");
    button.disabled = true;
    const message = $("answer-message");
    try {
      const result = await closeCase("answer", { answer: text }, message, "Resposta registrada.");
      if (result && !(result.response.ok && result.answer)) {
        const { response, answer } = result;
        show(message, (answer && answer.message) || `Não foi possível registrar a resposta (erro ${response.status}).`);
      }
    } finally {
      button.disabled = false;
    }
  });
})();
