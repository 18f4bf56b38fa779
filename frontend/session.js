// The session: sign in (POST /api/v1/auth/token), the token kept in memory only, the header with the
// person's name and "Sair", and the "Minhas avaliações" page (GET /api/v1/evaluations).
//
// Why in memory: no cookie authenticates anything, so no other site can make this browser act for
// the person (no CSRF), and no script of another origin can read it. The price: a reload asks to sign
// in again. app.js calls Session.fetch() and, on a 401, Session.expired(): the sign-in comes back with
// a message, and the evaluation form keeps what was typed (it is hidden, never emptied).
"use strict";

window.Session = (() => {
  const TOKEN_URL = "/api/v1/auth/token";
  const ME_URL = "/api/v1/auth/me";
  const LIST_URL = "/api/v1/evaluations?limit=50";
  const TIMEOUT_MS = 10000;
  const DECISION_LABELS = window.Labels.DECISIONS; // frontend/labels.js

  let token = null;
  let user = null;

  const $ = (id) => document.getElementById(id);
  const signin = $("signin");
  const signinForm = $("signin-form");
  const signinMessage = $("signin-message");
  const signinButton = $("signin-button");
  const workspace = $("workspace");
  const mine = $("mine");
  const bar = $("session-bar");
  const navEvaluate = $("nav-evaluate");
  const navMine = $("nav-mine");
  const portfolio = $("portfolio-page");
  const navPortfolio = $("nav-portfolio");
  const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "short" });

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  function showPage(page) {
    const signedIn = token !== null;
    signin.hidden = signedIn;
    bar.hidden = !signedIn;
    workspace.hidden = !signedIn || page !== "evaluate";
    mine.hidden = !signedIn || page !== "mine";
    portfolio.hidden = !signedIn || page !== "portfolio";
    navEvaluate.toggleAttribute("aria-current", page === "evaluate");
    navMine.toggleAttribute("aria-current", page === "mine");
    navPortfolio.toggleAttribute("aria-current", page === "portfolio");
    if (page === "evaluate") navEvaluate.setAttribute("aria-current", "page");
    if (page === "mine") navMine.setAttribute("aria-current", "page");
    if (page === "portfolio") navPortfolio.setAttribute("aria-current", "page");
    // Other pages (frontend/review.js) hide themselves when another one is shown.
    window.dispatchEvent(new CustomEvent("session:page", { detail: page }));
  }

  function showSignIn(message) {
    token = null;
    user = null;
    $("user-name").textContent = "";
    showPage("signin");
    show(signinMessage, message || "");
    $("password").value = "";
    ($("username").value ? $("password") : $("username")).focus();
  }

  async function request(url, options) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      return await fetch(url, { cache: "no-store", credentials: "omit", signal: controller.signal, ...options });
    } finally {
      clearTimeout(timer);
    }
  }

  /** fetch() with the session's token; options.signal, if given, is the caller's own. */
  function authorizedFetch(url, options = {}) {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return fetch(url, { cache: "no-store", credentials: "omit", ...options, headers });
  }

  async function signIn(username, password) {
    const body = new URLSearchParams({ username, password });
    let response;
    try {
      response = await request(TOKEN_URL, { method: "POST", body });
    } catch {
      return "Não foi possível falar com o serviço. Verifique a conexão e tente novamente.";
    }
    if (response.status === 429) {
      return "Muitas tentativas sem sucesso. Aguarde alguns minutos e tente de novo.";
    }
    if (response.status !== 200) {
      return response.status === 401
        ? "Usuário ou senha incorretos."
        : `Não foi possível entrar agora (erro ${response.status}). Tente novamente em alguns segundos.`;
    }
    const answer = await response.json();
    token = answer.access_token;
    const me = await authorizedFetch(ME_URL);
    user = me.ok ? await me.json() : { name: username, roles: [] };
    $("user-name").textContent = user.name;
    window.dispatchEvent(new CustomEvent("session:signed-in", { detail: user }));
    return "";
  }

  signinForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      show(signinMessage, "Informe o usuário e a senha.");
      $(username ? "password" : "username").focus();
      return;
    }
    signinButton.disabled = true;
    try {
      const problem = await signIn(username, password);
      if (problem) {
        show(signinMessage, problem);
        $("password").value = "";
        $("password").focus();
        return;
      }
      show(signinMessage, "");
      $("password").value = "";
      showPage("evaluate");
      $("form-title").focus();
    } finally {
      signinButton.disabled = false;
    }
  });

  $("sign-out").addEventListener("click", () => {
    // Signing out forgets the token and whatever the form held.
    window.dispatchEvent(new CustomEvent("session:signed-out"));
    $("username").value = "";
    showSignIn("Você saiu. Até logo!");
  });

  navEvaluate.addEventListener("click", () => {
    showPage("evaluate");
    $("form-title").focus();
  });

  navPortfolio.addEventListener("click", () => {
    showPage("portfolio");
    $("portfolio-title").focus();
  });

  navMine.addEventListener("click", () => {
    showPage("mine");
    $("mine-title").focus();
    loadMine();
  });

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  /** The status that counts for the customer: the reviewer's decision once there is one (LGPD art. 20). */
  function finalStatus(item) {
    const review = item.review;
    if (!review) return DECISION_LABELS[item.decision] || item.decision || "";
    if (review.status === "open") return "Em revisão";
    return `${DECISION_LABELS[review.final_decision] || review.final_decision} após revisão`;
  }

  async function loadMine() {
    const rows = mine.querySelector('[data-testid="mine-rows"]');
    const table = mine.querySelector('[data-testid="mine-table"]');
    show($("mine-message"), "Carregando…");
    let response;
    try {
      response = await authorizedFetch(LIST_URL);
    } catch {
      show($("mine-message"), "Não foi possível falar com o serviço. Tente novamente em alguns segundos.");
      return;
    }
    if (response.status === 401) {
      expired();
      return;
    }
    if (!response.ok) {
      show($("mine-message"), `Não foi possível carregar as avaliações (erro ${response.status}).`);
      return;
    }
    const page = await response.json();
    const items = Array.isArray(page.items) ? page.items : [];
    rows.replaceChildren(
      ...items.map((item) => {
        const tr = document.createElement("tr");
        tr.dataset.id = item.id;
        const when = new Date(String(item.evaluated_at).replace(/(\.\d{3})\d+/, "$1"));
        const final = cell(finalStatus(item));
        final.dataset.testid = "mine-final";
        tr.append(
          cell(Number.isNaN(when.getTime()) ? "" : dateTime.format(when)),
          cell(item.anonymized ? "Dados anonimizados" : item.name || ""),
          cell(DECISION_LABELS[item.decision] || item.decision || ""),
          final,
          cell((item.segment && (item.segment.description || item.segment.key)) || ""),
        );
        const code = document.createElement("td");
        const codeEl = document.createElement("code");
        codeEl.textContent = item.id;
        code.append(codeEl);
        tr.append(code);
        return tr;
      }),
    );
    show($("mine-message"), "");
    table.hidden = items.length === 0;
    $("mine-empty").hidden = items.length !== 0;
  }

  /** The API said 401: the token expired (or was refused). Back to the sign-in, keeping the form. */
  function expired() {
    const name = $("username").value;
    showSignIn("Sua sessão expirou. Entre novamente: os dados digitados no formulário foram mantidos.");
    $("username").value = name;
    $("password").focus();
  }

  showSignIn("");
  $("username").focus();

  return {
    fetch: authorizedFetch,
    expired,
    showPage,
    get signedIn() {
      return token !== null;
    },
  };
})();
