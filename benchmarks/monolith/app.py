"""The original system, reproduced faithfully as the benchmarks' baseline (not part of the product).

    uvicorn benchmarks.monolith.app:app --host 127.0.0.1 --port 8000

One FastAPI process: the pickle is loaded in memory when the module is imported, `/avaliar` is an
`async def` that predicts in-process with the pipeline and answers with the cluster's pt-BR
description. Its shortcuts are the original's and are kept on purpose, so that the comparison is
with what actually ran: the model loaded at import time, no validation beyond pydantic's types,
no records, no health checks, and two prints per request.
"""

from __future__ import annotations

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from contract import SEGMENTS
from models import PICKLE_PATH

app = FastAPI(title="Avaliação de cartão de crédito (sistema original)")

# The original loaded the pickle at import time, once per process.
modelo = joblib.load(PICKLE_PATH)
respostas = {s.id: s.description for s in SEGMENTS}


class Cliente(BaseModel):
    name: str
    balance: float
    purchases: float
    cash_advance: float
    credit_limit: float
    payments: float


@app.post("/avaliar")
async def avaliar(cliente: Cliente) -> dict[str, object]:
    dados = np.array(
        [[cliente.balance, cliente.purchases, cliente.cash_advance, cliente.credit_limit, cliente.payments]]
    )
    # The original printed the input and the prediction on every request; that is part of what it
    # cost per request, so the baseline keeps both prints.
    print(dados)
    cluster = int(modelo.predict(dados)[0])
    print(cluster)
    return {"nome": cliente.name, "cluster": cluster, "resposta": respostas[cluster]}
