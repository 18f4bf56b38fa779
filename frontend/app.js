// The evaluation form: checks the fields as the evaluation API does (docs/API.md), posts them to
// the API on the same origin, and shows the decision, the API's field errors, or a plain message
// when the service is unavailable. No framework and no build step: this file is served as is.
// The amounts' limits are not written here: the form reads them from the API (GET /api/v1/figures).
"use strict";

(() => {
  const API_URL = "/api/v1/evaluations";
  const FIGURES_URL = "/api/v1/figures";
  const TIMEOUT_MS = 10000; // the page never waits longer than this for an answer
  const NAME_MAX = 120;
  const CUSTOMER_ID_MAX = 64;

  // Form order: the first field with an error is the one that gets the focus.
  const MONEY_FIELDS = ["balance", "purchases", "cash_advance", "credit_limit", "payments"];
  const FIELDS = ["name", "customer_id", ...MONEY_FIELDS];

  const DECISIONS = {
    approved: { label: "Aprovado", icon: "✓" },
    review: { label: "Em análise", icon: "!" },
    denied: { label: "Negado", icon: "✕" },
  };

  const brl = new Intl.NumberFormat("pt-BR", {
    style: "currency",
    currency: "BRL",
    minimumFractionDigits: 2,
    maximumFractionDigits: 6,
  });
  const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "long", timeStyle: "medium" });
  const plainNumber = new Intl.NumberFormat("pt-BR", { maximumFractionDigits: 6 });

  // Each amount's limits as the API states them ({minimum, exclusive_minimum, maximum,
  // exclusive_maximum}, by field). Until they arrive, or if they cannot be read, the API alone
  // checks them; its messages are the same.
  const limits = {};
  async function loadLimits() {
    try {
      const response = await fetch(FIGURES_URL, { headers: { Accept: "application/json" }, cache: "no-store" });
      const figures = response.ok ? await response.json() : [];
      for (const figure of Array.isArray(figures) ? figures : []) {
        if (figure && MONEY_FIELDS.includes(figure.name)) limits[figure.name] = figure;
      }
    } catch {
      // Offline or an older API: the server still checks every value.
    }
  }
  const limitsLoaded = loadLimits();

  // ---------------------------------------------------------------- parsing and checks

  /**
   * Read an amount typed the Brazilian way ("1.234,56"), or plainly ("1234,56", "1234.56").
   * Returns {value} (a finite number) or {error} (a pt-BR message). Rules, in order:
   * - "R$" and spaces are ignored; a leading "-" is read so that the message can say "negative";
   * - with both "." and ",", the last one separates the cents and the other groups thousands;
   * - a lone "," separates the cents;
   * - several "." group thousands ("1.234.567"); a lone "." followed by exactly three digits
   *   groups thousands too ("1.234" is one thousand two hundred and thirty-four, as a Brazilian
   *   reads it), any other lone "." separates the cents ("1234.56").
   */
  function parseMoney(raw) {
    let s = String(raw).replace(/[\s\u00a0\u202f]/g, "");
    let negative = false;
    if (s.startsWith("-")) {
      negative = true;
      s = s.slice(1);
    }
    s = s.replace(/^R\$/i, "");
    if (s.startsWith("-")) {
      negative = true;
      s = s.slice(1);
    }
    if (s === "") return { error: negative ? "Valor inválido." : "Informe um valor (pode ser 0)." };
    if (!/^[0-9.,]+$/.test(s)) {
      return { error: "Use apenas números, com vírgula para os centavos (ex.: 1.234,56)." };
    }

    const bad = { error: "Formato não reconhecido. Exemplos válidos: 1.234,56 ou 1234,56 ou 1234.56." };
    const lastComma = s.lastIndexOf(",");
    const lastDot = s.lastIndexOf(".");
    let intPart = s;
    let fracPart = "";

    if (lastComma >= 0 && lastDot >= 0) {
      const decimal = lastComma > lastDot ? "," : ".";
      const group = decimal === "," ? "." : ",";
      const at = s.lastIndexOf(decimal);
      intPart = s.slice(0, at);
      fracPart = s.slice(at + 1);
      if (intPart.includes(decimal)) return bad;
      const grouped = new RegExp(`^\\d{1,3}(\\${group}\\d{3})+$`);
      if (!grouped.test(intPart)) return bad;
      intPart = intPart.split(group).join("");
    } else if (lastComma >= 0) {
      const parts = s.split(",");
      if (parts.length > 2) return { error: "Use uma só vírgula, para os centavos (ex.: 1.234,56)." };
      [intPart, fracPart] = parts;
    } else if (lastDot >= 0) {
      const parts = s.split(".");
      if (parts.length > 2) {
        if (!/^\d{1,3}(\.\d{3})+$/.test(s)) return bad;
        intPart = parts.join("");
      } else if (/^[1-9]\d{0,2}$/.test(parts[0]) && /^\d{3}$/.test(parts[1])) {
        intPart = parts.join("");
      } else {
        [intPart, fracPart] = parts;
      }
    }

    if (intPart === "" && fracPart === "") return bad;
    if (!/^\d*$/.test(intPart) || !/^\d*$/.test(fracPart)) return bad;
    const value = Number(`${intPart || "0"}.${fracPart || "0"}`);
    if (!Number.isFinite(value)) return { error: "Valor grande demais." };
    return { value: negative && value !== 0 ? -value : value };
  }

  /**
   * The amount checks of docs/API.md, with the limits the API gave; returns a pt-BR message, or ""
   * when the value is accepted. The messages are the API's own (evaluation_api/validation_messages.py),
   * so a field reads the same whichever side caught the problem.
   */
  function checkMoney(field, value) {
    if (!Number.isFinite(value)) return "Informe um número finito.";
    const limit = limits[field];
    if (!limit) return "";
    const { minimum, maximum } = limit;
    if (limit.exclusive_minimum && value <= minimum) return `Deve ser maior que ${plainNumber.format(minimum)}.`;
    if (!limit.exclusive_minimum && value < minimum) {
      return `Deve ser maior ou igual a ${plainNumber.format(minimum)}.`;
    }
    if (limit.exclusive_maximum && value >= maximum) return `Deve ser menor que ${plainNumber.format(maximum)}.`;
    if (!limit.exclusive_maximum && value > maximum) {
      return `Deve ser menor ou igual a ${plainNumber.format(maximum)}.`;
    }
    return "";
  }

  // What Python's str.isprintable() refuses, which is the API's "printable" rule: every "Other"
  // (control, format, surrogate, private use, unassigned) and every separator but the plain space.
  const NOT_PRINTABLE = /(?! )[\p{C}\p{Z}]/u;
  // Spaces other than the plain one (e.g. the no-break space that comes with pasted text) are
  // replaced by a plain space before the check: they look the same, and the API refuses them.
  const ODD_SPACES = /(?! )\p{Zs}/gu;
  // What Python's str.strip() removes (JavaScript's trim() misses \x1c-\x1f and \x85).
  const PY_STRIP = /^[\s\x1c-\x1f\x85]+|[\s\x1c-\x1f\x85]+$/g;
  const CUSTOMER_ID = /^[A-Za-z0-9._-]+$/;

  /**
   * Check one field; returns {value} to send (undefined for an empty optional field) or {error}.
   * The checks mirror docs/API.md exactly, so a value refused here is refused by the API too.
   */
  function validateField(field, raw) {
    if (field === "name") {
      const name = raw.replace(ODD_SPACES, " ").replace(PY_STRIP, "");
      if (name === "") return { error: "Informe o nome do cliente." };
      const length = [...name].length; // code points, as the API counts them
      if (length > NAME_MAX) return { error: `Use no máximo ${NAME_MAX} caracteres (agora são ${length}).` };
      if (NOT_PRINTABLE.test(name)) {
        return { error: "Não use caracteres de controle ou invisíveis (quebras de linha, tabulações)." };
      }
      return { value: name };
    }
    if (field === "customer_id") {
      const id = raw.trim();
      if (id === "") return { value: undefined }; // optional: left out of the request
      if (id.length > CUSTOMER_ID_MAX) {
        return { error: `Use no máximo ${CUSTOMER_ID_MAX} caracteres (agora são ${id.length}).` };
      }
      if (!CUSTOMER_ID.test(id)) {
        return { error: "Use apenas letras sem acento, números, ponto, hífen e sublinhado, sem espaços." };
      }
      return { value: id };
    }
    const parsed = parseMoney(raw);
    if (parsed.error) return parsed;
    const error = checkMoney(field, parsed.value);
    return error ? { error } : { value: parsed.value };
  }

  // ---------------------------------------------------------------- the page

  const form = document.getElementById("evaluation-form");
  const submitButton = document.getElementById("submit-button");
  const submitLabel = submitButton.querySelector(".btn-label");
  const resetButton = document.getElementById("reset-button");
  const serviceMessage = document.getElementById("service-message");
  const progress = document.getElementById("progress");
  const result = document.getElementById("result");
  const input = (field) => document.getElementById(field);
  let busy = false;
  let inflight = null; // {controller, cancelled} of the request being waited for

  function showFieldError(field, message) {
    const el = document.getElementById(`error-${field}`);
    el.textContent = message;
    el.hidden = false;
    input(field).setAttribute("aria-invalid", "true");
    input(field).closest(".field").classList.add("has-error");
  }

  function clearFieldError(field) {
    const el = document.getElementById(`error-${field}`);
    el.textContent = "";
    el.hidden = true;
    input(field).removeAttribute("aria-invalid");
    input(field).closest(".field").classList.remove("has-error");
  }

  function hasFieldError(field) {
    return input(field).getAttribute("aria-invalid") === "true";
  }

  /**
   * Under an amount, as it is typed, how it is read: "1.234" shows "Valor lido: R$ 1.234,00".
   * Its line is always there, empty or not, so that nothing moves under the pointer.
   */
  function showReading(field, value) {
    const el = document.getElementById(`reading-${field}`);
    el.textContent = value === undefined ? "" : `Valor lido: ${brl.format(value)}`;
  }

  function updateReading(field) {
    const parsed = parseMoney(input(field).value);
    const ok = !parsed.error && !checkMoney(field, parsed.value);
    showReading(field, ok ? parsed.value : undefined);
  }

  /** Check one field and show the outcome beside it; returns the check's result. */
  function checkAndShow(field) {
    const checked = validateField(field, input(field).value);
    if (checked.error) showFieldError(field, checked.error);
    else clearFieldError(field);
    if (MONEY_FIELDS.includes(field)) showReading(field, checked.error ? undefined : checked.value);
    return checked;
  }

  function showServiceMessage(text) {
    serviceMessage.textContent = text;
    serviceMessage.hidden = false;
  }

  function clearServiceMessage() {
    serviceMessage.textContent = "";
    serviceMessage.hidden = true;
  }

  function setBusy(isBusy) {
    busy = isBusy;
    submitButton.disabled = isBusy;
    submitButton.classList.toggle("is-busy", isBusy);
    submitLabel.textContent = isBusy ? "Avaliando…" : "Avaliar";
    // No aria-busy on the form: it would hold back the announcement of the status line inside it.
    progress.textContent = isBusy ? "Enviando os dados para avaliação…" : "";
  }

  function focusField(field) {
    const el = input(field);
    el.focus();
    el.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  /** Check every field; returns the JSON body to send, or null after showing the errors. */
  function collect() {
    const body = {};
    let firstBad = null;
    for (const field of FIELDS) {
      const checked = checkAndShow(field);
      if (checked.error) firstBad = firstBad || field;
      else if (checked.value !== undefined) body[field] = checked.value;
    }
    if (firstBad) {
      focusField(firstBad);
      return null;
    }
    return body;
  }

  // ---------------------------------------------------------------- answers

  function retryPhrase(retryAfter) {
    const seconds = Number.parseInt(retryAfter || "", 10);
    if (!Number.isFinite(seconds) || seconds <= 0) return "Tente novamente em alguns segundos.";
    if (seconds === 1) return "Tente novamente em 1 segundo.";
    if (seconds < 120) return `Tente novamente em ${seconds} segundos.`;
    return `Tente novamente em cerca de ${Math.ceil(seconds / 60)} minutos.`;
  }

  const KEPT = "Os dados digitados foram mantidos.";

  function showUnavailable(body, response) {
    const retry = retryPhrase(response.headers.get("Retry-After"));
    if (body && body.error === "database_unavailable") {
      showServiceMessage(
        `Não foi possível registrar a avaliação, por isso nenhuma decisão foi dada. ${retry} ${KEPT}`,
      );
    } else {
      showServiceMessage(`O serviço de avaliação está temporariamente indisponível. ${retry} ${KEPT}`);
    }
  }

  function showValidationErrors(body) {
    const errors = body && Array.isArray(body.errors) ? body.errors : [];
    const shown = new Set();
    const elsewhere = [];
    for (const item of errors) {
      const field = item && item.field;
      const message = (item && item.message) || "Valor inválido.";
      if (FIELDS.includes(field)) {
        // One message per field: the first one the API gives.
        if (!shown.has(field)) showFieldError(field, message);
        shown.add(field);
      } else {
        elsewhere.push(message);
      }
    }
    const summary = (body && body.message) || "Alguns campos são inválidos.";
    const extra = elsewhere.length ? ` ${elsewhere.join(" ")}` : "";
    showServiceMessage(`${summary}${extra} Corrija o que está indicado e envie de novo.`);
    const first = FIELDS.find((field) => shown.has(field));
    if (first) focusField(first);
  }

  function formatWhen(iso) {
    // Browsers read at most milliseconds; the API sends microseconds.
    const date = new Date(String(iso).replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(date.getTime()) ? String(iso || "") : dateTime.format(date);
  }

  function showResult(body, name) {
    const decision = DECISIONS[body.decision] || { label: String(body.decision || "Indefinido"), icon: "?" };
    const decisionEl = result.querySelector('[data-testid="decision"]');
    decisionEl.dataset.decision = body.decision || "";
    decisionEl.querySelector(".decision-icon").textContent = decision.icon;
    decisionEl.querySelector(".decision-label").textContent = decision.label;
    result.dataset.decision = body.decision || "";

    result.querySelector('[data-testid="result-name"]').textContent = name ? ` — ${name}` : "";
    const segment = body.segment || {};
    result.querySelector('[data-testid="segment"]').textContent = segment.description || segment.key || "";

    const reasons = result.querySelector('[data-testid="reasons"]');
    reasons.replaceChildren(
      ...(Array.isArray(body.reasons) ? body.reasons : []).map((reason) => {
        const li = document.createElement("li");
        li.textContent = reason.message || reason.code || "";
        if (reason.code) li.dataset.code = reason.code;
        return li;
      }),
    );

    // The explanation (null while the service has not learnt the model's parameters): the figures
    // that weighed most, and the smallest change of one figure that would change the decision.
    const explanation = body.explanation;
    const explained = result.querySelector('[data-testid="explanation"]');
    explained.hidden = !explanation;
    result.querySelector('[data-testid="factors"]').replaceChildren(
      ...(explanation && Array.isArray(explanation.factors) ? explanation.factors : []).map((factor) => {
        const li = document.createElement("li");
        li.textContent = factor.message || "";
        li.dataset.feature = factor.feature || "";
        return li;
      }),
    );
    result.querySelector('[data-testid="counterfactual"]').textContent = explanation ? explanation.summary || "" : "";

    // Denied and review decisions come with a statement for the customer (frontend/statement.js).
    const statementActions = result.querySelector('[data-testid="statement-actions"]');
    statementActions.hidden = !(body.id && (body.decision === "denied" || body.decision === "review"));
    document.getElementById("open-statement").onclick = () => window.Statement.open(body.id, "evaluate");

    result.querySelector('[data-testid="evaluation-id"]').textContent = body.id || "";
    result.querySelector('[data-testid="model-version"]').textContent = (body.model && body.model.version) || "";
    result.querySelector('[data-testid="policy-version"]').textContent = body.policy_version || "";
    const when = result.querySelector('[data-testid="evaluated-at"]');
    when.dateTime = body.evaluated_at || "";
    when.textContent = formatWhen(body.evaluated_at);

    result.hidden = false;
    const title = document.getElementById("result-title");
    title.focus({ preventScroll: true });
    result.scrollIntoView({ block: "start", behavior: "smooth" });
  }

  async function readJson(response) {
    const type = response.headers.get("Content-Type") || "";
    if (!type.includes("json")) return null;
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  async function submit() {
    clearServiceMessage();
    await limitsLoaded; // quick (same origin), and never rejects
    const body = collect();
    if (!body) {
      progress.textContent = "Corrija os campos indicados antes de enviar.";
      return;
    }
    result.hidden = true; // an earlier result must never pass for this one
    setBusy(true);
    const controller = new AbortController();
    const request = { controller, cancelled: false };
    inflight = request;
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      // With the session's token (frontend/session.js).
      const response = await window.Session.fetch(API_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const answer = await readJson(response);
      if (request.cancelled) return;
      if (response.status === 201 && answer) {
        setBusy(false);
        progress.textContent = "Avaliação concluída.";
        showResult(answer, body.name);
      } else if (response.status === 401) {
        // The session expired: sign in again; the form keeps what was typed.
        window.Session.expired();
      } else if (response.status === 403) {
        showServiceMessage(`Sua conta não tem permissão para fazer avaliações. ${KEPT}`);
      } else if (response.status === 422) {
        showValidationErrors(answer);
      } else if (response.status === 503) {
        showUnavailable(answer, response);
      } else if (response.status === 429) {
        // The gateway's rate limit (deploy/nginx): too many evaluations from this address.
        const retry = retryPhrase(response.headers.get("Retry-After"));
        showServiceMessage(`Muitas avaliações em pouco tempo. ${retry} ${KEPT}`);
      } else {
        const reference = (answer && answer.request_id) || response.headers.get("X-Request-ID");
        showServiceMessage(
          `Não foi possível concluir a avaliação (erro ${response.status}). ${KEPT} ` +
            "Tente novamente; se o erro continuar, avise o suporte" +
            (reference ? ` informando o código ${reference}.` : "."),
        );
      }
    } catch (error) {
      if (request.cancelled) return; // the user asked for a new evaluation meanwhile
      if (error && error.name === "AbortError") {
        showServiceMessage(
          `O serviço de avaliação demorou demais para responder. Tente novamente em alguns segundos. ${KEPT}`,
        );
      } else {
        showServiceMessage(
          "Não foi possível falar com o serviço de avaliação. Verifique a conexão e tente novamente " +
            `em alguns segundos. ${KEPT}`,
        );
      }
    } finally {
      clearTimeout(timer);
      if (inflight === request) {
        inflight = null;
        if (busy) setBusy(false);
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!busy) submit();
  });

  // Errors appear when the form is sent, not when a field loses the focus: a message that
  // appears on blur moves the button under a pointer that is about to click it, and the click is
  // lost. Once a field shows an error, it is checked again at every keystroke, so the message goes
  // away as soon as the value is right.
  for (const field of FIELDS) {
    input(field).addEventListener("input", () => {
      if (hasFieldError(field)) checkAndShow(field);
      else if (MONEY_FIELDS.includes(field)) updateReading(field);
    });
  }

  // What empties the form: the user asks for a new evaluation, or signs out.
  window.addEventListener("session:signed-out", () => resetButton.click());
  resetButton.addEventListener("click", () => {
    if (inflight) {
      inflight.cancelled = true;
      inflight.controller.abort();
      inflight = null;
      setBusy(false);
    }
    // Through the prototype: a control named "reset" or "submit" would shadow the form's method.
    HTMLFormElement.prototype.reset.call(form);
    for (const field of FIELDS) {
      clearFieldError(field);
      if (MONEY_FIELDS.includes(field)) showReading(field, undefined);
    }
    clearServiceMessage();
    progress.textContent = "";
    result.hidden = true;
    input("name").focus();
  });
})();
