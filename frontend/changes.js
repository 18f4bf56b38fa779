// The "Mudanças" page: change control of the policy (evaluation_api/releases/routes.py). The challengers
// and, for the chosen one, its report (GET /api/v1/challengers/{id}/report) as a heat map (a real table:
// rows the live decision, columns the challenger's, each cell's shade by its share of the total) and as a
// table of counts and percentages, overall or for one segment; the history of releases; the policy
// versions. For risk and admin, the actions: register a version from a YAML file, start and stop a
// challenger, promote it (four eyes, with a justification) and roll back (confirmed, with one). Auditors
// read everything and see no action: every element marked `data-acts` stays hidden for them.
// Requests go through Session.fetch (frontend/session.js): the token stays in memory.
"use strict";

(() => {
  const API = "/api/v1";
  const DECISIONS = ["approved", "review", "denied"];
  const DECISION_WORDS = window.Labels.DECISIONS; // frontend/labels.js
  const SEGMENT_NAMES = window.Labels.SEGMENTS;
  const MIN_JUSTIFICATION = 20; // evaluation_api/reviews/rules.py MIN_JUSTIFICATION, which promotions reuse
  const VERSION_STATUS = { draft: "Rascunho", candidate: "Candidata", live: "Em produção", retired: "Aposentada" };
  const RELEASE_ACTIONS = { seed: "Versão inicial", promote: "Promoção", rollback: "Volta à anterior" };
  // A cell's share of the total, at or below which it takes shade 1, 2, 3, 4; above the last, shade 5.
  // An empty cell is shade 0. Classes, not inline styles: the page's CSP forbids those.
  const HEAT_STEPS = [0.05, 0.15, 0.3, 0.5];
  const READERS = ["risk", "admin", "auditor"];
  const ACTORS = ["risk", "admin"];

  const $ = (id) => document.getElementById(id);
  const page = $("changes-page");
  const nav = $("nav-changes");
  const message = $("changes-message");
  const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "medium" });
  const number = new Intl.NumberFormat("pt-BR");
  const percent = new Intl.NumberFormat("pt-BR", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });

  let acts = false; // risk or admin: may act, not only read
  let challengers = [];
  let releases = [];
  let chosenId = null;
  let report = null;
  let loading = 0; // the newest load: an older answer arriving late is dropped

  /** A message in `el`; `ok` for news (a step done, a load under way), otherwise a problem. */
  function show(el, text, ok = false) {
    el.textContent = text || "";
    el.hidden = !text;
    el.classList.toggle("status-ok", ok);
  }

  function when(iso) {
    const moment = new Date(String(iso || "").replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(moment.getTime()) ? "" : dateTime.format(moment);
  }

  function cell(text, testid) {
    const td = document.createElement("td");
    td.textContent = text;
    if (testid) td.dataset.testid = testid;
    return td;
  }

  function element(tag, attributes, text) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) el.setAttribute(key, String(value));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // ------------------------------------------------------------------ requests

  /** A request through the session: {response, answer}, or null when it could not be made (said in `el`). */
  async function call(url, el, options) {
    let response;
    try {
      response = await window.Session.fetch(url, options);
    } catch {
      show(el, "Não foi possível falar com o serviço. Verifique a conexão e tente novamente.");
      return null;
    }
    if (response.status === 401) {
      window.Session.expired();
      return null;
    }
    const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
    return { response, answer };
  }

  function post(url, el, body) {
    const options = { method: "POST", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return call(url, el, options);
  }

  /** The API's refusal in pt-BR, naming the rule it broke. */
  function refusal(response, answer) {
    const said = (answer && answer.message) || "";
    if (response.status === 403) {
      return answer && answer.error === "four_eyes"
        ? `Regra dos quatro olhos: ${said}`
        : "Sua conta não pode fazer esta mudança: só as equipes de risco e os administradores podem.";
    }
    if (response.status === 409) return `Esta mudança não é possível agora. ${said}`.trim();
    if (response.status === 422) {
      const errors = (answer && Array.isArray(answer.errors) && answer.errors) || [];
      return errors.length ? errors.map((e) => e.message).join(" ") : said || "Alguns campos são inválidos.";
    }
    if (response.status === 503) {
      return "O serviço está indisponível no momento. Nada foi alterado; tente novamente em alguns segundos.";
    }
    return said || `Não foi possível concluir (erro ${response.status}).`;
  }

  // ------------------------------------------------------------------ the page

  function showOwn() {
    window.Session.showPage("changes");
    page.hidden = false;
    nav.setAttribute("aria-current", "page");
  }

  window.addEventListener("session:page", (event) => {
    if (event.detail !== "changes") {
      page.hidden = true;
      nav.removeAttribute("aria-current");
    }
  });

  window.addEventListener("session:signed-in", (event) => {
    const roles = (event.detail && event.detail.roles) || [];
    nav.hidden = !roles.some((role) => READERS.includes(role));
    acts = roles.some((role) => ACTORS.includes(role));
    for (const el of page.querySelectorAll("[data-acts]")) el.hidden = !acts;
  });

  window.addEventListener("session:signed-out", () => {
    nav.hidden = true;
    acts = false;
    challengers = [];
    releases = [];
    chosenId = null;
    report = null;
    $("report").hidden = true;
    for (const form of page.querySelectorAll("form")) form.reset();
  });

  nav.addEventListener("click", async () => {
    showOwn();
    $("changes-title").focus();
    await load();
  });

  /** Read the challengers, the versions and the releases; then the chosen challenger's report. */
  async function load() {
    const mine = ++loading;
    show(message, "Carregando…", true);
    const [c, v, r, m] = await Promise.all([
      call(`${API}/challengers`, message),
      call(`${API}/policy-versions`, message),
      call(`${API}/releases`, message),
      call(`${API}/model-versions`, message),
    ]);
    if (mine !== loading || !c || !v || !r || !m) return;
    for (const { response, answer } of [c, v, r, m]) {
      if (!response.ok) {
        show(message, `Não foi possível carregar as mudanças. ${refusal(response, answer)}`);
        return;
      }
    }
    show(message, "");
    challengers = Array.isArray(c.answer) ? c.answer : [];
    releases = Array.isArray(r.answer) ? r.answer : [];
    const versions = Array.isArray(v.answer) ? v.answer : [];
    if (!challengers.some((x) => x.id === chosenId)) {
      const active = challengers.find((x) => !x.stopped_at);
      chosenId = (active || challengers[0] || { id: null }).id;
    }
    renderChallengers();
    renderVersions(versions);
    renderModels(Array.isArray(m.answer) ? m.answer : []);
    renderReleases();
    await loadReport();
  }

  // ------------------------------------------------------------------ challengers

  /** The release that promoted the challenger, if one did (a challenger stopped first keeps its outcome). */
  function promotionOf(challenger) {
    return releases.find((r) => r.action === "promote" && r.challenger_id === challenger.id) || null;
  }

  function challengerStatus(challenger) {
    const promotion = promotionOf(challenger);
    if (promotion) return `Promovido por ${promotion.actor}`;
    if (!challenger.stopped_at) return "Em sombra";
    return `Encerrado por ${challenger.stopped_by}`;
  }

  /** A release's pair in words: "a política X" (and its model, when a release names one). */
  function pairOf(release) {
    return `a política ${release.policy_version}` + (release.model_version ? ` com o modelo ${release.model_version}` : "");
  }

  function versionOf(challenger) {
    const parts = [];
    if (challenger.policy_version) parts.push(challenger.policy_version);
    if (challenger.model_version) parts.push(`modelo ${challenger.model_version}`);
    return parts.join(" + ") || "—";
  }

  function renderChallengers() {
    $("challengers-rows").replaceChildren(
      ...challengers.map((challenger) => {
        const tr = document.createElement("tr");
        tr.dataset.id = challenger.id;
        tr.dataset.active = String(!challenger.stopped_at);
        if (challenger.id === chosenId) tr.setAttribute("aria-current", "true");
        tr.append(
          cell(String(challenger.id)),
          cell(challengerStatus(challenger), "challenger-status"),
          cell(versionOf(challenger), "challenger-version-label"),
          cell(challenger.started_by),
          cell(when(challenger.started_at)),
        );
        const action = document.createElement("td");
        const button = element("button", { type: "button", class: "btn btn-secondary btn-small" }, "Ver relatório");
        button.dataset.testid = "challenger-open";
        button.addEventListener("click", async () => {
          chosenId = challenger.id;
          renderChallengers();
          await loadReport();
          $("report-title").focus();
        });
        action.append(button);
        tr.append(action);
        return tr;
      }),
    );
    $("challengers-table").hidden = challengers.length === 0;
    $("challengers-empty").hidden = challengers.length !== 0;
  }

  $("challenger-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const formMessage = $("challenger-form-message");
    const id = Number($("challenger-version").value) || null;
    const model = Number($("challenger-model").value) || null;
    if (!id && !model) {
      show(formMessage, "Escolha uma política ou um modelo em rascunho ou candidato (registre uma política abaixo, se não houver).");
      return;
    }
    const button = $("challenger-start");
    button.disabled = true;
    try {
      const result = await post(`${API}/challengers`, formMessage, { policy_version_id: id, model_version_id: model });
      if (!result) return;
      if (result.response.status !== 201) {
        show(formMessage, refusal(result.response, result.answer));
        return;
      }
      show(formMessage, "");
      chosenId = result.answer.id;
      await load();
      show(message, `Desafiante ${result.answer.id} iniciado: cada nova avaliação também é decidida, em sombra, por ${versionOf(result.answer)}.`, true);
    } finally {
      button.disabled = false;
    }
  });

  $("challenger-stop").addEventListener("click", async () => {
    const promoteMessage = $("promote-message");
    const id = chosenId;
    const result = await post(`${API}/challengers/${id}/stop`, promoteMessage);
    if (!result) return;
    if (result.response.status !== 204) {
      show(promoteMessage, refusal(result.response, result.answer));
      return;
    }
    show(promoteMessage, "");
    await load();
    show(message, `Desafiante ${id} encerrado: ele não decide mais em sombra; o relatório continua disponível.`, true);
  });

  // ------------------------------------------------------------------ the report

  async function loadReport() {
    const box = $("report");
    if (chosenId === null) {
      box.hidden = true;
      report = null;
      return;
    }
    const id = chosenId;
    const result = await call(`${API}/challengers/${id}/report`, message);
    if (!result || id !== chosenId) return;
    if (!result.response.ok) {
      show(message, `Não foi possível carregar o relatório. ${refusal(result.response, result.answer)}`);
      return;
    }
    report = result.answer;
    renderReport();
  }

  function renderReport() {
    const challenger = challengers.find((x) => x.id === report.challenger_id) || {};
    $("report").hidden = false;
    $("report").dataset.challengerId = report.challenger_id;
    $("report-title").textContent = `Relatório do desafiante ${report.challenger_id}: ${versionOf(report)}`;
    const total = report.evaluations || 0;
    const since = when(report.started_at);
    $("report-summary").textContent =
      total === 0
        ? `Em sombra desde ${since}.`
        : `${number.format(total)} ${total === 1 ? "avaliação decidida" : "avaliações decididas"} em sombra desde ${since}; ` +
          `${number.format(report.changed)} (${percent.format(report.changed / total)}) teriam outra decisão.`;
    $("report-empty").hidden = total !== 0;
    $("report-body").hidden = total === 0;
    fillSegments();
    draw();
    const promotable = !promotionOf(challenger) && (!challenger.stopped_at || challenger.outcome === "stopped");
    for (const el of $("report").querySelectorAll("[data-acts]")) el.hidden = !acts || !promotable;
    $("challenger-stop").hidden = Boolean(challenger.stopped_at);
    show($("promote-message"), "");
    fieldError("promote", "");
  }

  function fillSegments() {
    const select = $("report-segment");
    const previous = select.value || "all";
    const keys = Object.keys(report.by_segment || {});
    select.replaceChildren(
      element("option", { value: "all" }, "Todos"),
      ...keys.map((key) => element("option", { value: key }, SEGMENT_NAMES[key] || key)),
    );
    select.value = keys.includes(previous) ? previous : "all";
  }

  $("report-segment").addEventListener("change", () => draw());

  /** The matrix to show from one swap report (live, or a backtest's): overall, or the chosen segment's. */
  function matrixOf(source, segment) {
    if (segment === "all") return source.swap || {};
    return (source.by_segment || {})[segment] || {};
  }

  function draw() {
    const segment = $("report-segment").value || "all";
    const scope = segment === "all" ? "todos os perfis" : `perfil ${SEGMENT_NAMES[segment] || segment}`;
    const live = matrixOf(report, segment);
    const maps = [heatMap(live, `Política atual × desafiante, ${scope}`, "live")];
    (Array.isArray(report.backtests) ? report.backtests : []).forEach((backtest, i) => {
      const name = backtest.file_name || backtest.file || backtest.name || `nº ${i + 1}`;
      maps.push(heatMap(matrixOf(backtest, segment), `Backtest ${name}: política atual × desafiante, ${scope}`, "backtest"));
    });
    $("heatmaps").replaceChildren(...maps);
    renderSwapTable(live, scope);
  }

  function totalOf(matrix) {
    return DECISIONS.reduce((sum, a) => sum + DECISIONS.reduce((s, b) => s + ((matrix[a] || {})[b] || 0), 0), 0);
  }

  function shade(count, total) {
    if (!count || !total) return 0;
    const share = count / total;
    const step = HEAT_STEPS.findIndex((limit) => share <= limit);
    return step === -1 ? HEAT_STEPS.length + 1 : step + 1;
  }

  /** A real table: a caption, the challenger's decisions as column headers, the live ones as row headers. */
  function heatMap(matrix, caption, source) {
    const total = totalOf(matrix);
    const table = element("table", { class: "heatmap" });
    table.dataset.testid = "heatmap";
    table.dataset.source = source;
    table.append(element("caption", {}, `${caption} (${number.format(total)} ${total === 1 ? "cliente" : "clientes"})`));
    const head = element("thead");
    const top = element("tr");
    top.append(element("td", { class: "heat-corner" }), element("th", { scope: "colgroup", colspan: DECISIONS.length }, "Decisão do desafiante"));
    const columns = element("tr");
    columns.append(element("th", { scope: "col", class: "heat-axis" }, "Decisão atual"));
    for (const b of DECISIONS) columns.append(element("th", { scope: "col" }, DECISION_WORDS[b]));
    head.append(top, columns);
    const body = element("tbody");
    for (const a of DECISIONS) {
      const tr = element("tr");
      tr.append(element("th", { scope: "row" }, DECISION_WORDS[a]));
      for (const b of DECISIONS) {
        const count = (matrix[a] || {})[b] || 0;
        const swap = a !== b;
        const td = element("td", { class: `heat-cell ${swap ? "heat-swap" : "heat-same"} heat-${shade(count, total)}` });
        td.dataset.live = a;
        td.dataset.challenger = b;
        td.dataset.count = count;
        td.title = `${DECISION_WORDS[a]} → ${DECISION_WORDS[b]}: ${number.format(count)} (${percent.format(total ? count / total : 0)})`;
        const figure = element("span", { class: "heat-count" }, number.format(count));
        figure.dataset.testid = "heat-count";
        td.append(figure);
        if (swap) td.append(element("span", { class: "visually-hidden" }, " (troca de decisão)"));
        tr.append(td);
      }
      body.append(tr);
    }
    table.append(head, body);
    return table;
  }

  function renderSwapTable(matrix, scope) {
    const total = totalOf(matrix);
    $("swap-table-caption").textContent = `Quantos clientes em cada par de decisões, ${scope}`;
    const rows = [];
    for (const a of DECISIONS) {
      for (const b of DECISIONS) {
        const count = (matrix[a] || {})[b] || 0;
        const tr = element("tr", { class: a === b ? "same" : "swap" });
        tr.dataset.live = a;
        tr.dataset.challenger = b;
        const n = cell(number.format(count), "swap-count");
        n.className = "num";
        const share = cell(percent.format(total ? count / total : 0), "swap-share");
        share.className = "num";
        tr.append(cell(DECISION_WORDS[a]), cell(a === b ? `${DECISION_WORDS[b]} (igual)` : DECISION_WORDS[b]), n, share);
        rows.push(tr);
      }
    }
    const sum = element("tr", { class: "total" });
    const label = element("th", { scope: "row", colspan: 2 }, "Total");
    const n = cell(number.format(total), "swap-total");
    n.className = "num";
    const all = cell(percent.format(total ? 1 : 0));
    all.className = "num";
    sum.append(label, n, all);
    rows.push(sum);
    $("swap-rows").replaceChildren(...rows);
  }

  // ------------------------------------------------------------------ promotion

  function fieldError(form, text) {
    show($(`error-${form}-justification`), text);
    $(`${form}-justification`).setAttribute("aria-invalid", text ? "true" : "false");
  }

  /** The justification typed in `form`, or null with the rule said beside the field. */
  function justificationOf(form) {
    const text = $(`${form}-justification`).value.trim();
    if (text.length < MIN_JUSTIFICATION) {
      fieldError(form, `A justificativa precisa ter pelo menos ${MIN_JUSTIFICATION} caracteres (tem ${text.length}).`);
      $(`${form}-justification`).focus();
      return null;
    }
    fieldError(form, "");
    return text;
  }

  $("promote-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const promoteMessage = $("promote-message");
    show(promoteMessage, "");
    const justification = justificationOf("promote");
    if (justification === null) return;
    const id = chosenId;
    const button = $("promote-submit");
    button.disabled = true;
    try {
      const result = await post(`${API}/challengers/${id}/promote`, promoteMessage, { justification });
      if (!result) return;
      const { response, answer } = result;
      if (response.status !== 200) {
        if (response.status === 422 && (answer.errors || []).some((e) => e.field === "justification")) {
          fieldError("promote", refusal(response, answer));
        } else {
          show(promoteMessage, refusal(response, answer));
        }
        return;
      }
      $("promote-form").reset();
      await load();
      show(message, `Desafiante ${id} promovido: ${pairOf(answer)} decide em todos os processos a partir de ${when(answer.effective_at)}.`, true);
    } finally {
      button.disabled = false;
    }
  });

  // ------------------------------------------------------------------ the history and the rollback

  function renderReleases() {
    $("releases-rows").replaceChildren(
      ...releases.map((release, i) => {
        const tr = document.createElement("tr");
        tr.dataset.id = release.id;
        tr.dataset.action = release.action;
        if (i === 0) tr.className = "current";
        const version = release.model_version
          ? `${release.policy_version} + modelo ${release.model_version}`
          : release.policy_version;
        tr.append(
          cell(when(release.effective_at) + (i === 0 ? " (atual)" : ""), "release-effective"),
          cell(RELEASE_ACTIONS[release.action] || release.action, "release-action"),
          cell(version, "release-version"),
          cell(release.actor, "release-actor"),
          cell(release.justification || "—", "release-justification"),
        );
        return tr;
      }),
    );
    $("releases-table").hidden = releases.length === 0;
    $("releases-empty").hidden = releases.length !== 0;
    const current = releases[0];
    const target = current && releases.find((r) => r.id === current.previous_id);
    $("rollback-open").disabled = !target;
    $("rollback-open").title = target ? "" : "Não há liberação anterior para a qual voltar.";
    $("rollback-form").hidden = true;
    $("rollback-question").textContent = target
      ? `Em produção desde ${when(current.effective_at)}, ${pairOf(current)} deixa de decidir: ` +
        `${pairOf(target)} volta a decidir em todos os processos alguns segundos depois. Confirma?`
      : "";
  }

  $("rollback-open").addEventListener("click", () => {
    $("rollback-form").hidden = false;
    show($("rollback-message"), "");
    fieldError("rollback", "");
    $("rollback-justification").focus();
  });

  $("rollback-cancel").addEventListener("click", () => {
    $("rollback-form").reset();
    $("rollback-form").hidden = true;
    $("rollback-open").focus();
  });

  $("rollback-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const rollbackMessage = $("rollback-message");
    show(rollbackMessage, "");
    const justification = justificationOf("rollback");
    if (justification === null) return;
    const button = $("rollback-confirm");
    button.disabled = true;
    try {
      const result = await post(`${API}/releases/rollback`, rollbackMessage, { justification });
      if (!result) return;
      const { response, answer } = result;
      if (response.status !== 200) {
        show(rollbackMessage, refusal(response, answer));
        return;
      }
      $("rollback-form").reset();
      await load();
      show(message, `Volta feita: ${pairOf(answer)} decide em todos os processos a partir de ${when(answer.effective_at)}.`, true);
    } finally {
      button.disabled = false;
    }
  });

  // ------------------------------------------------------------------ policy versions

  function renderVersions(versions) {
    $("versions-rows").replaceChildren(
      ...versions.map((version) => {
        const tr = document.createElement("tr");
        tr.dataset.id = version.id;
        tr.dataset.status = version.status;
        tr.append(
          cell(String(version.id)),
          cell(version.label, "version-label"),
          cell(VERSION_STATUS[version.status] || version.status, "version-status"),
          cell(version.author),
          cell(when(version.created_at)),
        );
        return tr;
      }),
    );
    const busy = new Set(challengers.filter((c) => !c.stopped_at).map((c) => c.policy_version_id));
    const startable = versions.filter((v) => (v.status === "draft" || v.status === "candidate") && !busy.has(v.id));
    const select = $("challenger-version");
    select.replaceChildren(
      element("option", { value: "" }, startable.length ? "A política em produção" : "A política em produção (nenhuma em rascunho: registre uma abaixo)"),
      ...startable.map((v) => element("option", { value: v.id }, `${v.id}: ${v.label} (${VERSION_STATUS[v.status]})`)),
    );
    if (startable.length) select.value = String(startable[0].id);
  }

  /** The model versions a challenger may name (draft or candidate); the empty choice is the live model. */
  function renderModels(models) {
    const busy = new Set(challengers.filter((c) => !c.stopped_at).map((c) => c.model_version_id));
    const startable = models.filter((v) => (v.status === "draft" || v.status === "candidate") && !busy.has(v.id));
    $("challenger-model").replaceChildren(
      element("option", { value: "" }, "O modelo em produção"),
      ...startable.map((v) => element("option", { value: v.id }, `${v.id}: ${v.version} (${VERSION_STATUS[v.status]})`)),
    );
  }

  $("register-file").addEventListener("change", async () => {
    const file = $("register-file").files[0];
    if (file) $("register-text").value = await file.text();
  });

  function registerProblems(problems) {
    $("register-problems").replaceChildren(
      ...problems.map((problem) => {
        const li = document.createElement("li");
        li.dataset.line = problem.line || "";
        li.textContent = problem.line ? `Linha ${problem.line}: ${problem.message}` : problem.message;
        return li;
      }),
    );
    $("error-register").hidden = problems.length === 0;
    $("register-text").setAttribute("aria-invalid", problems.length ? "true" : "false");
  }

  $("register-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const registerMessage = $("register-message");
    show(registerMessage, "");
    registerProblems([]);
    const text = $("register-text").value;
    if (!text.trim()) {
      registerProblems([{ message: "Escolha o arquivo da política ou cole o texto dela." }]);
      $("register-text").focus();
      return;
    }
    const button = $("register-submit");
    button.disabled = true;
    try {
      const result = await post(`${API}/policy-versions`, registerMessage, { text });
      if (!result) return;
      const { response, answer } = result;
      if (response.status === 422) {
        registerProblems(Array.isArray(answer.errors) && answer.errors.length ? answer.errors : [{ message: refusal(response, answer) }]);
        $("register-text").focus();
        return;
      }
      if (response.status !== 201) {
        show(registerMessage, refusal(response, answer));
        return;
      }
      $("register-form").reset();
      await load();
      $("challenger-version").value = String(answer.id);
      show(message, `Versão ${answer.id} (${answer.label}) registrada como rascunho. Inicie um desafiante com ela para vê-la decidir em sombra.`, true);
    } finally {
      button.disabled = false;
    }
  });
})();
