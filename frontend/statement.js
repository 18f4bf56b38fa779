// The statement of a denied or review decision (`Comunicado da decisão`), for the customer: shown from
// GET /api/v1/evaluations/{id}/statement, downloaded as a PDF from .../statement.pdf. Each issue is
// audited by the API. Opened from the result of an evaluation (frontend/app.js).
"use strict";

window.Statement = (() => {
  const $ = (id) => document.getElementById(id);
  const page = $("statement-page");
  const body = $("statement-body");
  const message = $("statement-message");
  const byTestId = (id) => page.querySelector(`[data-testid="${id}"]`);
  const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "short", timeZone: "America/Sao_Paulo" });
  let current = null;
  let returnTo = "evaluate";

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  function item(tag, text) {
    const el = document.createElement(tag);
    el.textContent = text;
    return el;
  }

  function render(statement) {
    const issued = new Date(String(statement.issued_at).replace(/(\.\d{3})\d+/, "$1"));
    byTestId("statement-issued").textContent = Number.isNaN(issued.getTime())
      ? ""
      : `Emitido em ${dateTime.format(issued)} (horário de Brasília)`;
    byTestId("statement-customer").textContent = statement.customer_name || "Dados pessoais anonimizados";
    byTestId("statement-id").textContent = statement.evaluation_id;
    byTestId("statement-decision").textContent = statement.decision_text;
    byTestId("statement-reasons").replaceChildren(...statement.principal_reasons.map((r) => item("li", r)));
    byTestId("statement-change-block").hidden = !statement.what_would_change;
    byTestId("statement-change").textContent = statement.what_would_change || "";
    byTestId("statement-data").replaceChildren(
      ...statement.data_used.map((d) => {
        const div = document.createElement("div");
        div.append(item("dt", d.label), item("dd", d.value));
        return div;
      }),
    );
    byTestId("statement-source").textContent = statement.data_source;
    byTestId("statement-review").textContent = statement.review_how;
    byTestId("statement-legal").textContent = `Base legal: ${statement.legal_basis}`;
  }

  /** GET through the session; null when it failed, with the reason said (the API's message if any). */
  async function get(url, texts) {
    let response;
    try {
      response = await window.Session.fetch(url);
    } catch {
      say(texts.unreachable);
      return null;
    }
    if (response.status === 401) {
      window.Session.expired();
      return null;
    }
    if (!response.ok) {
      let text = texts.refused(response.status);
      try {
        const answer = await response.json();
        if (answer && answer.message) text = answer.message;
      } catch {
        // not JSON: the generic message stays
      }
      say(text);
      return null;
    }
    return response;
  }

  async function open(evaluationId, from) {
    current = evaluationId;
    returnTo = from || "evaluate";
    window.Session.showPage("statement");
    page.hidden = false;
    body.hidden = true;
    say("Carregando o comunicado…");
    const response = await get(`/api/v1/evaluations/${encodeURIComponent(evaluationId)}/statement`, {
      unreachable: "Não foi possível falar com o serviço. Tente novamente em alguns segundos.",
      refused: (status) => `Não foi possível emitir o comunicado agora (erro ${status}).`,
    });
    if (!response) return;
    render(await response.json());
    say("");
    body.hidden = false;
    $("statement-title").focus();
  }

  async function downloadPdf() {
    if (!current) return;
    const response = await get(`/api/v1/evaluations/${encodeURIComponent(current)}/statement.pdf`, {
      unreachable: "Não foi possível baixar o PDF agora. Tente novamente em alguns segundos.",
      refused: (status) => `Não foi possível baixar o PDF agora (erro ${status}).`,
    });
    if (!response) return;
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `comunicado-${current}.pdf`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  $("statement-pdf").addEventListener("click", downloadPdf);
  $("statement-back").addEventListener("click", () => window.Session.showPage(returnTo));

  window.addEventListener("session:page", (event) => {
    if (event.detail !== "statement") page.hidden = true;
  });

  return { open };
})();
