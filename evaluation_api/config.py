"""Settings of the evaluation API, read from the environment (one typed class, validated at start)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
# The policy seeds version 1 of the registry; it lives beside the rules, outside the API (decisioning/).
POLICY_PATH = PROJECT_DIR / "decisioning" / "policy.yaml"


def database_driver_url(value: str) -> str:
    """DATABASE_URL with the driver SQLAlchemy must use; ValueError for another database. One driver per
    database, the one we pin: psycopg 3 for PostgreSQL. (Also for tools given a records database.)"""
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    if not value.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ValueError("DATABASE_URL must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_service_url: HttpUrl = HttpUrl("http://127.0.0.1:3000")
    # The other model services this deployment runs, each serving one model version beside the live one
    # (a candidate: `make serve-candidate`). Only a version one of these (or MODEL_SERVICE_URL) serves
    # can be registered, so the API never calls an address a user typed. JSON: ["http://127.0.0.1:3001"].
    candidate_model_service_urls: list[HttpUrl] = []
    database_url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'evaluations.db'}"
    policy_path: Path = POLICY_PATH
    frontend_dir: Path = PROJECT_DIR / "frontend"
    auto_migrate: bool = True
    log_level: str = "INFO"

    # The model phase of an evaluation (waiting for a call, the call and its retries) ends within
    # this; the record's commit that follows has RECORD_COMMIT_TIMEOUT_S (below).
    evaluation_deadline_s: float = Field(2.0, gt=0, le=30)
    # Per attempt: connecting to a live service on a LAN takes well under this; the whole answer
    # must arrive within the read timeout of the request being sent (evaluation_api/model_client/http1.py).
    model_connect_timeout_s: float = Field(0.5, gt=0)
    model_read_timeout_s: float = Field(1.5, gt=0)
    model_retry_attempts: int = Field(3, ge=1, le=10)
    # Retry budget: retries are at most this share of recent calls to the model service, plus a
    # reserve of MODEL_RETRY_BURST; when most calls fail, retries stop instead of multiplying the load.
    model_retry_ratio: float = Field(0.1, ge=0, le=1)
    model_retry_burst: int = Field(10, ge=0)
    model_max_connections: int = Field(32, ge=1)
    # A whole answer of the model service (a batch of 256 customers is about 30 KB): a larger one is
    # a transport error, not memory filled by a broken or hostile peer.
    model_max_response_bytes: int = Field(1 << 20, ge=4096)
    # A kept connection unused this long is closed (servers and proxies drop idle ones anyway).
    model_idle_timeout_s: float = Field(15.0, gt=0, le=3600)
    # Concurrent evaluations are coalesced into one /predict call of at most this many customers,
    # with at most this many calls in flight: under load, batches grow instead of queues.
    model_batch_max_size: int = Field(256, ge=1)
    model_batch_max_in_flight: int = Field(2, ge=1)
    # How long a call may gather evaluations at most (it leaves sooner when none joined in a turn of the loop).
    model_batch_max_wait_s: float = Field(0.002, ge=0, le=0.1)
    # Consecutive failed calls that open the circuit, and how long it stays open before a trial call.
    breaker_threshold: int = Field(3, ge=1)
    breaker_ttl_s: float = Field(5.0, gt=0, le=300)
    database_pool_size: int = Field(5, ge=1)
    # Each decision's explanation (its figures' pull, the smallest change that alters it), in the answer
    # and the record. Off only to measure what it costs (make bench) or where another system explains.
    explain_decisions: bool = True
    # Deadlines a statement of a decision gives the customer, in calendar days: the answer to a request
    # for human review (the law sets none; the issuer's own term), and to a request for the main
    # elements and criteria of the analysis (Lei 12.414/2011 art. 5: 10 days).
    # Change control (evaluation_api/releases/): how often each process reads the newest release, and how
    # far ahead of its promotion a release takes effect, so that every process has read it by then and
    # all switch at the same instant (at least two polls).
    release_poll_s: float = Field(0.5, gt=0, le=60)
    release_switch_delay_s: float = Field(2.0, ge=0, le=600)
    # Challenger decisions waiting to be stored; beyond this they are dropped (counted), never waited for.
    shadow_queue_max: int = Field(20_000, ge=1, le=1_000_000)
    # How long the shadow scorer gathers challenger decisions into one transaction (off the answer's path).
    shadow_linger_s: float = Field(0.5, ge=0, le=10)
    review_due_days: int = Field(15, ge=1, le=90)
    information_due_days: int = Field(10, ge=1, le=10)
    # Monitoring (/metrics): input drift (PSI), segment and decision mix over the newest evaluations.
    drift_window_size: int = Field(5000, ge=100, le=1_000_000)
    # PSI over fewer evaluations than this is mostly noise: not exported until the window has them.
    drift_min_evaluations: int = Field(500, ge=1)
    # Traces (evaluation_api/observability/tracing.py): exported over OTLP/HTTP when set, e.g.
    # http://otel-collector:4318/v1/traces; no tracing at all when not. The OpenTelemetry names.
    otel_exporter_otlp_traces_endpoint: HttpUrl | None = None
    otel_service_name: str = "evaluation-api"
    # SQLite only (PostgreSQL keeps its own durability settings). NORMAL: a committed record survives
    # a crash of the API, not a power cut or a kernel crash (the last commits before one may be lost;
    # the file stays consistent). FULL: an fsync per commit, which also survives a power cut.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Protection at rest (evaluation_api/privacy/encryption.py): the data key file. Unset: data-keys.json beside
    # the SQLite file (var/ for `make run`), or under var/ for PostgreSQL. Kubernetes mounts it from a
    # Secret and sets DATA_KEYS_CREATE=false, so that a missing Secret stops the start.
    data_keys_path: Path | None = None
    data_keys_create: bool = True
    # Or the key file's content itself (JSON), from the environment: Compose, where the image has no
    # writable place for a generated file. Rotation (python -m evaluation_api.privacy.key_rotation) needs the file.
    data_keys: SecretStr | None = None
    # Records older than this are anonymised by `python -m evaluation_api.privacy.retention` (LGPD art. 16).
    retention_days: int = Field(1825, ge=1, le=36500)

    # Identity (docs/ARCHITECTURE.md, "Identity"). The signing key of the API's own tokens: from the
    # environment (a Secret in Kubernetes), else a file generated on first start (0600) for `make run`.
    auth_signing_key: SecretStr | None = Field(None, min_length=32)
    auth_signing_key_file: Path = PROJECT_DIR / "var" / "signing.key"
    auth_issuer: str = "credit-eligibility"
    auth_audience: str = "evaluation-api"
    auth_token_ttl_s: int = Field(900, ge=60, le=86_400)
    # Wrong passwords in a row that lock an account, and for how long.
    auth_max_failed_logins: int = Field(5, ge=1, le=100)
    auth_lockout_s: int = Field(900, ge=1, le=86_400)
    # How long a system key's account is remembered in process (a disabled key stops within this).
    auth_key_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    # A bank's identity provider (OpenID Connect): its access tokens are accepted when an issuer is set.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None  # default: discovered from the issuer's /.well-known/openid-configuration
    oidc_roles_claim: str = "roles"  # a dotted path is followed: realm_access.roles
    oidc_username_claim: str = "preferred_username"
    oidc_algorithms: list[str] = ["RS256", "ES256"]
    oidc_jwks_cache_s: int = Field(300, ge=1)
    # /docs and /openapi.json: on for development, off in the production overlay.
    docs_enabled: bool = True
    # The largest request body the API reads (evaluation_api/body_limit.py); 413 past it. A route
    # that takes larger bodies gets its own limit by path prefix: MAX_BODY_BYTES_BY_PATH, JSON such
    # as {"/api/v1/portfolios": 10485760}.
    max_body_bytes: int = Field(64 * 1024, ge=1)
    max_body_bytes_by_path: dict[str, int] = {}

    # The decision record (evaluation_api/records/writer.py, RecordWriter). An evaluation waits at most
    # RECORD_COMMIT_TIMEOUT_S for its record's commit, after the model phase: so an evaluation answers
    # within EVALUATION_DEADLINE_S + RECORD_COMMIT_TIMEOUT_S, or 503 with Retry-After. At most
    # RECORD_QUEUE_MAX records wait for the writer; past that, 503 at once (nothing recorded).
    record_commit_timeout_s: float = Field(2.0, gt=0, le=30)
    record_queue_max: int = Field(1000, ge=1)
    # SQLite with synchronous=NORMAL: a lone evaluation's record is committed on the event loop when
    # nothing else waits (never waiting for a lock there: a held one sends it to the writer's queue and
    # its deadline). false: every record goes through the writer thread, whose deadline then also
    # bounds a disk that stops taking writes (a network file system, say).
    record_inline: bool = True
    # Every statement of the API's database sessions ends within DATABASE_STATEMENT_TIMEOUT_S and
    # waits at most DATABASE_LOCK_TIMEOUT_S for a lock (PostgreSQL's statement_timeout and lock_timeout;
    # SQLite's busy timeout): a stuck INSERT fails and rolls back on its own, before the caller's
    # deadline, so the 503 that caller gets ("not recorded") is true.
    database_statement_timeout_s: float = Field(1.0, gt=0)
    database_lock_timeout_s: float = Field(0.5, gt=0)
    # TCP keepalives on PostgreSQL connections: a peer that vanished (a failover, a cut network) is
    # noticed after about 4x this, instead of the kernel's two hours.
    database_keepalive_s: int = Field(5, ge=1, le=300)
    # `python -m evaluation_api.migrate` on PostgreSQL: how long it waits for another rollout's
    # migration (the advisory lock), and how long each DDL statement waits for its table's lock.
    migration_wait_s: float = Field(300, gt=0)
    migration_lock_timeout_s: float = Field(5, gt=0)

    # Portfolio runs (docs/ARCHITECTURE.md, "Portfolio runs from the API"): uploads, results and the
    # job queue (huey, SQLite) live under this directory, shared by the API and its worker.
    portfolio_run_dir: Path = PROJECT_DIR / "var" / "portfolio-runs"
    portfolio_max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # Uploads and results are personal data: `python -m portfolio.worker purge` removes runs older than this.
    portfolio_retention_days: int = Field(7, ge=1, le=3650)
    # The worker writes progress at most this often, and fails a `running` run not updated for this long.
    portfolio_progress_interval_s: float = Field(0.5, gt=0, le=60)
    portfolio_stale_after_s: int = Field(600, ge=10)
    # Each result row carries the explanation columns (top_reason, counterfactual_*), as `--explain` adds.
    # Off by default: they cost far more than the rest of a row (docs/ARCHITECTURE.md, "Portfolio runs").
    portfolio_explain: bool = False

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        return database_driver_url(value)

    def data_keys_file(self) -> Path:
        if self.data_keys_path is not None:
            return self.data_keys_path
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///")).parent / "data-keys.json"
        return PROJECT_DIR / "var" / "data-keys.json"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.model_connect_timeout_s + self.model_read_timeout_s > self.evaluation_deadline_s * 2:
            raise ValueError("model timeouts must fit within twice the evaluation deadline")
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("OIDC_AUDIENCE is required when OIDC_ISSUER is set")
        if any(alg.upper().startswith("HS") or alg.lower() == "none" for alg in self.oidc_algorithms):
            raise ValueError("OIDC_ALGORITHMS takes asymmetric algorithms only (RS256, ES256, ...)")
        if not self.database_lock_timeout_s <= self.database_statement_timeout_s < self.record_commit_timeout_s:
            raise ValueError(
                "DATABASE_LOCK_TIMEOUT_S <= DATABASE_STATEMENT_TIMEOUT_S < RECORD_COMMIT_TIMEOUT_S must hold: "
                "a stuck statement must fail before the evaluation stops waiting for it"
            )
        if self.release_switch_delay_s < 2 * self.release_poll_s:
            raise ValueError(
                "RELEASE_SWITCH_DELAY_S must be at least twice RELEASE_POLL_S: every process must read a release "
                "before it takes effect"
            )
        if not self.policy_path.is_file():
            raise ValueError(f"POLICY_PATH {self.policy_path} is not a file")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
