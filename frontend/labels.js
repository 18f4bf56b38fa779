// The pt-BR words the pages share for the API's keys: the decisions and the segments' short names (the
// descriptions, which are long, come from the API). One place, so that every page names them alike.
"use strict";

window.Labels = Object.freeze({
  DECISIONS: Object.freeze({ approved: "Aprovado", review: "Em análise", denied: "Negado" }),
  // Short names of the segments (contract/SEGMENTS), for charts, tables and selectors.
  SEGMENTS: Object.freeze({
    high_limit_revolvers: "Limite alto, pouco disponível",
    cash_advance_users: "Preferem saques",
    least_active: "Pouco ativos",
    credit_purchasers_good_payers: "Compram no crédito, bons pagadores",
    low_limit_light_users: "Limite baixo, uso leve",
  }),
});
