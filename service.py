"""The model service: the credit-card segmentation pipeline served by BentoML with adaptive batching.

    bentoml serve service:CreditCardSegmentation --port 3000

It only predicts. Business rules (approve, review, deny) live in the evaluation API.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import os
import signal
import sys
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
import joblib
import numpy as np
from bentoml.validators import DType, Shape
from fastapi import FastAPI
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from contract import FEATURE_NAMES, MODEL_NAME, SEGMENT_KEYS
from models import CARD_PATH, PICKLE_PATH
from models.distances import PipelineDistances

# Adaptive batching, chosen by measurement (benchmarks/run.py, docs/ARCHITECTURE.md):
# - MAX_BATCH_SIZE is the most customers the service predicts in one pipeline call. Concurrent
#   single-customer requests are merged up to it; a larger request (a portfolio) is split into
#   chunks of this size. A pipeline call on a whole portfolio is cheap, so it is set high enough
#   that a portfolio is one call and the batcher never has to split it.
# - MAX_LATENCY_MS is BentoML's hard deadline for a queued request: a request whose estimated wait
#   exceeds it is shed with 503 instead of queueing without bound. 64 concurrent single-customer
#   clients on 2 cores must never see it, and a GC pause or a busy core inflates the estimate, so
#   it is generous; a client in a hurry has its own, shorter deadline (the evaluation API: 2 s).
MAX_BATCH_SIZE = 100_000
MAX_LATENCY_MS = 5_000
# Off only to measure what batching buys (benchmarks/): the same contract, one call per request.
BATCHING = os.environ.get("MODEL_SERVICE_BATCHING", "true") != "false"

# A customer's money amounts, in the card's currency. Finite and non-negative; anything else is a
# 400 that names the field (extra or wrongly typed fields included: strict, no coercion from text).
Money = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]


# A TypedDict, not a BaseModel: pydantic validates it much faster, and parsing is most of the cost
# of a portfolio-sized request (docs/ARCHITECTURE.md). One field per figure of the contract, by name.
if TYPE_CHECKING:
    Customer = dict[str, float]  # the TypedDict below, generated from the contract
else:
    Customer = with_config(ConfigDict(extra="forbid"))(TypedDict("Customer", {name: Money for name in FEATURE_NAMES}))

# A customer's row for the pipeline: its figures in the model's order.
_row = itemgetter(*FEATURE_NAMES)


class PredictInput(bentoml.IODescriptor):
    """/predict's body: `customers` and nothing else (an unknown top-level field is a 400 too)."""

    model_config = ConfigDict(extra="forbid")

    customers: list[Customer]


class PredictBatchInput(PredictInput):
    """/predict_batch's body: the same as /predict's."""


_LARGEST_INT = 10**308


def _rows_of_numbers(value: Any) -> Any:
    # Before numpy sees it: numpy would turn "1", true or a flat row into floats without a word.
    if not isinstance(value, list):
        raise ValueError("features must be a list of rows")
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != len(FEATURE_NAMES):
            raise ValueError(
                f"features[{i}] must be a row of {len(FEATURE_NAMES)} numbers ({', '.join(FEATURE_NAMES)})"
            )
        for j, x in enumerate(row):
            kind = type(x)
            if kind is float:
                continue
            if kind is not int:
                raise ValueError(f"features[{i}][{j}] ({FEATURE_NAMES[j]}) must be a number, got {kind.__name__}")
            if not -_LARGEST_INT < x < _LARGEST_INT:  # JSON integers are unbounded; float64 is not
                raise ValueError(f"features[{i}][{j}] ({FEATURE_NAMES[j]}) must be a finite number >= 0")
    return value


def _finite_non_negative(features: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(features) | (features < 0)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        name, value = FEATURE_NAMES[column], features[row, column]
        raise ValueError(f"features[{row}][{column}] ({name}) must be a finite number >= 0, got {value}")
    return features


# Checked per request, before adaptive batching merges requests: one client's bad row must never
# fail the requests batched with it, and the error names the row in the caller's own request.
Portfolio = Annotated[
    np.ndarray,
    BeforeValidator(_rows_of_numbers),
    Shape((-1, len(FEATURE_NAMES))),
    DType("float64"),
    AfterValidator(_finite_non_negative),
]


class Prediction(TypedDict):
    cluster: Annotated[int, Field(description="Segment id (stable across retraining)")]
    segment: Annotated[str, Field(description="Segment key, e.g. cash_advance_users")]
    distances: Annotated[
        list[float], Field(description="Distance to each segment's centroid, by segment id, in scaled space")
    ]


# The model card that travels with this code: models/model_card.json, which bentofile.yaml packs into
# the Bento (and so into its image). It, not the store's copy, says which pickle may be served: the
# store is a directory anyone with access can edit, pickle and card alike. MODEL_CARD_PATH names
# another card outside the store (a newly trained model's, served beside the old one in a rollout).
TRUSTED_CARD_PATH = Path(os.environ.get("MODEL_CARD_PATH") or CARD_PATH)
VERSION_DIGITS = 16  # a model's version is its pickle's sha256, cut (models/import_model.py)


class ModelIntegrityError(RuntimeError):
    """The model in the store is not the one the trusted card describes: the service refuses to start."""


def _trusted_card() -> dict[str, Any]:
    try:
        card: dict[str, Any] = json.loads(TRUSTED_CARD_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read the model card {TRUSTED_CARD_PATH}: {exc}") from exc
    if not isinstance(card.get("pickle_sha256"), str) or len(card["pickle_sha256"]) != 64:
        raise ModelIntegrityError(f"the model card {TRUSTED_CARD_PATH} has no pickle_sha256")
    return card


# Resolved once, at import: the class-level model below and the X-Model-Version header then name the
# same version even if another one is imported (and becomes `latest`) while this process runs.
# MODEL_TAG pins a version (a rollout); by default the trusted card's (git is the source of truth:
# checking out an older pickle and card, then `make import`, serves that one again).
MODEL_TAG = str(
    bentoml.models.get(
        os.environ.get("MODEL_TAG") or f"{MODEL_NAME}:{_trusted_card()['pickle_sha256'][:VERSION_DIGITS]}"
    ).tag
)
MODEL_VERSION = MODEL_TAG.split(":", 1)[1]


def verify_model(*, version: str, pickle_path: str, card: dict[str, Any]) -> None:
    """Raise ModelIntegrityError unless the tag's version and the pickle's bytes are the card's. Before
    anything is unpickled: unpickling runs code."""
    expected = card["pickle_sha256"]
    if version != expected[:VERSION_DIGITS]:
        raise ModelIntegrityError(
            f"the model tag's version {version} is not the one the model card {TRUSTED_CARD_PATH} describes "
            f"({expected[:VERSION_DIGITS]}); refusing to start. Serve the card's model, or set MODEL_CARD_PATH "
            "to the card of the model in MODEL_TAG."
        )
    actual = _sha256(pickle_path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{pickle_path} (sha256 {actual}) does not match the sha256 in the model card {TRUSTED_CARD_PATH} "
            f"({expected}); the store's copy was changed. Refusing to load it."
        )


class JsonBodiesOnly:
    """ASGI middleware: a POST whose Content-Type is not JSON gets 415 before BentoML parses it.

    BentoML also parses multipart and form bodies, and answers a malformed multipart request (no
    boundary) with a 500; our APIs take JSON only, so anything else is the client's error."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"application/json")
            if content_type.split(b";")[0].strip().lower() != b"application/json":
                body = json.dumps({"error": "Content-Type must be application/json"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class ModelVersionHeader:
    """ASGI middleware: every response names the model version that made it (X-Model-Version).

    Callers record it with each decision; a header keeps /predict's body exactly its contract."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.header = (b"x-model-version", MODEL_VERSION.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


http = FastAPI()  # plain GET routes beside BentoML's own; mounted at / below


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the process that started it dies.

    `bentoml serve` is an arbiter that forks the workers into their own process groups. If the
    arbiter is killed (a crash, an OOM kill), its workers would live on as orphans holding the port,
    unsupervised, and the restarted service could not bind it. No-op off Linux."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _workers() -> int:
    """MODEL_SERVICE_WORKERS, else one worker per core this process may run on (what `make run` gets).

    A worker is one process on one core, and BentoML's per-request HTTP work is CPU-bound, so one
    worker leaves the other cores idle under load. In a container the image sets it (1 per pod:
    pods, not workers, are what Kubernetes scales)."""
    value = os.environ.get("MODEL_SERVICE_WORKERS", "").strip()
    if value:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _untraced() -> dict[str, Any]:
    """Unless tracing is configured (BENTOML_CONFIG_OPTIONS or a BENTOML_CONFIG file, docs/DEPLOY.md),
    no path is traced: BentoML's OpenTelemetry middleware costs every call even when no span is exported
    (docs/ARCHITECTURE.md, "Figures behind choices in the code"). This setting would override the
    configured one, so it is only made when there is none."""
    if "tracing" in os.environ.get("BENTOML_CONFIG_OPTIONS", "") or os.environ.get("BENTOML_CONFIG"):
        return {}
    return {"tracing": {"excluded_urls": "predict,predict_batch,predict_bulk,metadata,readyz,livez,healthz,metrics"}}


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@bentoml.service(
    name="credit_card_segmentation",
    workers=_workers(),
    traffic={"timeout": 60},
    # One log line per request costs measurable throughput at these rates; errors are still logged.
    logging={"access": {"enabled": os.environ.get("MODEL_SERVICE_ACCESS_LOG", "false") == "true"}},
    **_untraced(),
    resources={"cpu": "1", "memory": "512Mi"},
)
@bentoml.asgi_app(http, path="/")
class CreditCardSegmentation:
    # Declared at class scope so that `bentoml build` packs this exact model into the Bento.
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        _die_with_parent()
        # The card that travels with the code, never the store's copy (see TRUSTED_CARD_PATH).
        self.card = _trusted_card()
        pickle_path = self.model.path_of(PICKLE_PATH.name)
        verify_model(version=self.model.tag.version or "", pickle_path=pickle_path, card=self.card)
        self.pipeline = joblib.load(pickle_path)
        # The pipeline's transform without scikit-learn's per-call validation, bit for bit the same
        # (models/distances.py): most of a small batch's time otherwise. Raises for another pipeline.
        self.distances = PipelineDistances(self.pipeline)
        self.tag = str(self.model.tag)
        # Objects loaded so far live as long as the process: keep them out of the GC's scans,
        # which otherwise show as p99 spikes even at one client.
        gc.freeze()
        # A young-generation pass every 100,000 allocations instead of 700: parsing a portfolio or
        # many concurrent requests allocates that many short-lived objects, and each pass also walks
        # what survived (what it bought: docs/ARCHITECTURE.md).
        gc.set_threshold(100_000, 50, 100)

    def _predict(self, X: np.ndarray) -> list[Prediction]:
        if len(X) == 0:
            return []
        # One pass: every distance (the pipeline's transform), the nearest one is the cluster.
        distances = self.distances(X)
        clusters = distances.argmin(axis=1)
        return [
            Prediction(cluster=c, segment=SEGMENT_KEYS[c], distances=d)
            for c, d in zip(clusters.tolist(), np.round(distances, 6).tolist(), strict=True)
        ]

    @bentoml.api(
        batchable=BATCHING, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS, input_spec=PredictInput
    )
    async def predict(self, customers: list[Customer]) -> list[Prediction]:
        """Segment each customer; one prediction per customer, in order."""
        # async: BentoML then calls it on the worker's event loop. A sync API is handed to a thread
        # per batch, and for batches this small the hand-off costs more CPU than the prediction
        # (docs/ARCHITECTURE.md). The event loop is busy while a batch is predicted, as a thread
        # holding the GIL would keep it anyway.
        return self._predict_customers(customers)

    # /predict's contract for callers that batch themselves (the evaluation API coalesces concurrent
    # evaluations into one call): no adaptive batcher, whose wait is learnt from recent load and then
    # holds a lone request long after a burst is over (docs/ARCHITECTURE.md), and whose deadline
    # sheds with 503. Async for the same reason as /predict.
    @bentoml.api(batchable=False, input_spec=PredictBatchInput)
    async def predict_batch(self, customers: list[Customer]) -> list[Prediction]:
        """Segment each customer; one prediction per customer, in order. Not merged with other
        requests: for callers that send their own batches."""
        return self._predict_customers(customers)

    def _predict_customers(self, customers: list[Customer]) -> list[Prediction]:
        X = np.array([_row(c) for c in customers], dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
        return self._predict(X)

    # Not batchable: a portfolio is already a batch, and BentoML's batcher would only add its wait and
    # its deadline (a request larger than its estimate is shed with 503).
    @bentoml.api(batchable=False)
    def predict_bulk(self, features: Portfolio) -> np.ndarray:
        """A portfolio in one call: one row per customer, the five features in order; returns each
        customer's segment id (keys in /metadata). A lean encoding for large requests: no per-customer
        objects, which cost more than the model (see README)."""
        if len(features) == 0:
            return np.empty(0, dtype=np.int64)
        segments: np.ndarray = self.pipeline.predict(features).astype(np.int64)
        return segments

    @http.get("/metadata")
    def metadata(self) -> dict[str, Any]:
        """The model's name and version tag, its features in order, its segments, its fitted
        parameters (`geometry`, what the API explains decisions with) and its card."""
        return {
            "model": {"name": MODEL_NAME, "version": self.model.tag.version, "tag": self.tag},
            "features": list(FEATURE_NAMES),
            "segments": [
                {"id": s["id"], "key": s["key"], "description": s["description"], "size_share": s["size_share"]}
                for s in self.card["segments"]
            ],
            "geometry": self.distances.geometry(),
            "card": self.card,
        }


# mypy does not apply class decorators: at run time the name is BentoML's Service around the class,
# a type its SDK (_bentoml_sdk) publishes no annotations for.
_service: Any = CreditCardSegmentation
_service.add_asgi_middleware(ModelVersionHeader)
_service.add_asgi_middleware(JsonBodiesOnly)

# BentoML 1.4 derives a list output's media type from its JSON schema, which it regenerates (a new
# pydantic TypeAdapter) on every response, a large share of a worker's time under load (profile in
# docs/ARCHITECTURE.md). Both outputs are JSON; saying so once makes that lookup a class attribute.
for _api in ("predict", "predict_batch", "predict_bulk"):
    _service.apis[_api].output_spec.media_type = "application/json"
