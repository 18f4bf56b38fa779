"""The registry of policy and model versions and the change-control flow over them, in the records
database:

    register (draft) -> start a challenger (candidate, decides in shadow) -> promote (live, four eyes)
                                                                            -> rollback (one step back)

What decides is a pair: a policy version and a model version. A challenger names a policy, a model or
both; the half it does not name is the live one's. A release with no model version is decided by the
model MODEL_SERVICE_URL serves (the seed, and every release before model versions existed).

Every step is one transaction with its audit event. A promotion or a rollback adds a release whose
`effective_at` lies RELEASE_SWITCH_DELAY_S ahead: every API process polls the newest release
(evaluation_api/releases/live.py) and switches at that same instant, without a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from contract import DECISIONS, SEGMENT_KEYS
from decisioning.policy import Policy, parse_policy
from evaluation_api.audit import trail as audit
from evaluation_api.database import as_utc
from evaluation_api.portfolio_runs.store import PortfolioRunRow
from evaluation_api.releases.table import (
    ChallengerRow,
    ModelVersionRow,
    PolicyVersionRow,
    ReleaseRow,
    ShadowDecisionRow,
)
from evaluation_api.reviews.rules import justification_problem

SEED_ACTOR = "system:seed"
MAX_POLICY_BYTES = 64 * 1024


class ReleaseRefused(Exception):
    """A step of the flow that cannot be taken; `code` and the pt-BR message say why."""

    status_code = 409

    def __init__(self, code: str, message: str, *, status_code: int = 409) -> None:
        super().__init__(message)
        self.code, self.message, self.status_code = code, message, status_code


@dataclass(frozen=True)
class Version:
    """A registered policy version, parsed."""

    id: int
    label: str
    text: str
    policy: Policy


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version: where it is served, and its /metadata (card and geometry)."""

    id: int
    version: str
    service_url: str
    metadata: dict[str, Any]


@dataclass
class Cache:
    """Versions a process already holds, by id: the poll runs twice a second in every process."""

    policies: dict[int, Version]
    models: dict[int, ModelVersion]

    @classmethod
    def empty(cls) -> Cache:
        return cls({}, {})


@dataclass(frozen=True)
class State:
    """What decides now, in one read: the newest release (from its effective_at) and the active challenger."""

    release_id: int
    effective_at: datetime
    live: Version
    live_model: ModelVersion | None  # None: the model MODEL_SERVICE_URL serves
    challenger_id: int | None
    challenger: Version | None  # None (with a challenger): it decides with the live policy
    challenger_model: ModelVersion | None = None  # None (with a challenger): the live model's segment


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _version(row: PolicyVersionRow | Any) -> Version:
    # A stored text was validated when it was registered; parsed again here because a process keeps
    # the Policy object, not the row.
    return Version(row.id, row.label, row.text, parse_policy(row.text, source=f"policy version {row.id}"))


def seed(engine: Engine, text: str, *, source: str) -> bool:
    """Register `text` (POLICY_PATH) as version 1, live, if nothing was ever released. Safe when several
    processes start at once: one seeds, the others find it seeded. True if this call seeded."""
    policy = parse_policy(text, source=source)
    for attempt in range(3):
        now = _now()
        try:
            with engine.begin() as connection:
                if connection.execute(select(ReleaseRow.id).limit(1)).first() is not None:
                    return False
                version_id = _insert(connection, PolicyVersionRow, {
                    "label": policy.version, "sha256": sha256_of(text), "text": text, "author": SEED_ACTOR,
                    "created_at": now, "status": "live",
                })  # fmt: skip
                _insert(connection, ReleaseRow, {
                    "policy_version_id": version_id, "action": "seed", "actor": SEED_ACTOR, "justification": None,
                    "previous_id": None, "challenger_id": None, "created_at": now, "effective_at": now,
                })  # fmt: skip
            return True
        # Another process seeded first: its insert wins the unique label (PostgreSQL), or SQLite refuses
        # this transaction's write after its read. Look again.
        except (IntegrityError, OperationalError):
            if attempt == 2:
                raise
    return False


def _model_version(row: Any) -> ModelVersion:
    return ModelVersion(row.id, row.version, row.service_url, row._mapping["metadata"])


def state(engine: Engine, cache: Cache | None = None) -> State:
    """The newest release and the active challenger. `cache` spares reading and parsing versions this
    process already holds."""
    cache = cache if cache is not None else Cache.empty()
    with engine.connect() as connection:
        release = connection.execute(select(ReleaseRow).order_by(ReleaseRow.id.desc()).limit(1)).first()
        if release is None:
            raise LookupError("no policy was ever released: the API seeds version 1 at its first start")
        challenger = connection.execute(
            select(ChallengerRow.id, ChallengerRow.policy_version_id, ChallengerRow.model_version_id)
            .where(ChallengerRow.stopped_at.is_(None))
            .limit(1)
        ).first()
        policies = {release.policy_version_id, challenger.policy_version_id if challenger else None} - {None}
        models = {release.model_version_id, challenger.model_version_id if challenger else None} - {None}
        if policies - set(cache.policies):
            query = select(PolicyVersionRow).where(PolicyVersionRow.id.in_(policies - set(cache.policies)))
            for row in connection.execute(query):
                cache.policies[row.id] = _version(row)
        if models - set(cache.models):
            query = select(ModelVersionRow.__table__).where(ModelVersionRow.id.in_(models - set(cache.models)))
            for row in connection.execute(query):
                cache.models[row.id] = _model_version(row)
    return State(
        release_id=release.id,
        effective_at=as_utc(release.effective_at),
        live=cache.policies[release.policy_version_id],
        live_model=cache.models[release.model_version_id] if release.model_version_id else None,
        challenger_id=challenger.id if challenger else None,
        challenger=(
            cache.policies[challenger.policy_version_id] if challenger and challenger.policy_version_id else None
        ),
        challenger_model=(
            cache.models[challenger.model_version_id] if challenger and challenger.model_version_id else None
        ),
    )


def register(engine: Engine, text: str, *, context: audit.Context, source: str = "policy") -> PolicyVersionRow:
    """A new draft version. PolicyError (each problem with its line) when the file does not validate;
    ReleaseRefused when the same text or the same label is already registered. Nothing is written then."""
    policy = parse_policy(text, source=source)
    digest = sha256_of(text)
    with engine.begin() as connection:
        same = connection.execute(
            select(PolicyVersionRow.id, PolicyVersionRow.label, PolicyVersionRow.sha256).where(
                (PolicyVersionRow.sha256 == digest) | (PolicyVersionRow.label == policy.version)
            )
        ).first()
        if same is not None:
            if same.sha256 == digest:
                raise ReleaseRefused("duplicate", f"Esta política já está registrada, como a versão {same.id}.")
            raise ReleaseRefused(
                "duplicate_label",
                f"O rótulo version: {policy.version!r} já é o da versão {same.id}; dê outro rótulo à nova política.",
            )
        values = {
            "label": policy.version, "sha256": digest, "text": text, "author": context.actor, "created_at": _now(),
            "status": "draft",
        }  # fmt: skip
        row = PolicyVersionRow(id=_insert(connection, PolicyVersionRow, values), **values)
        audit.append(
            connection,
            audit.event(
                context,
                "policy_version.create",
                target_type="policy_version",
                target_id=str(row.id),
                details={"label": row.label, "sha256": digest},
            ),
        )
    return row


def register_model(
    engine: Engine, metadata: dict[str, Any], *, service_url: str, context: audit.Context
) -> ModelVersionRow:
    """A new draft model version, from the /metadata of the service that serves it (the caller asked it).
    ReleaseRefused when the version is already registered. Nothing is written then."""
    described = metadata.get("model")
    model: dict[str, Any] = described if isinstance(described, dict) else {}
    version, tag = model.get("version"), model.get("tag")
    if not isinstance(version, str) or not isinstance(tag, str) or not isinstance(metadata.get("card"), dict):
        raise ReleaseRefused(
            "not_a_model", f"O serviço {service_url} não descreveu um modelo (model.version, model.tag, card).",
            status_code=422,
        )  # fmt: skip
    with engine.begin() as connection:
        same = connection.execute(select(ModelVersionRow.id).where(ModelVersionRow.version == version)).first()
        if same is not None:
            raise ReleaseRefused("duplicate", f"O modelo {version} já está registrado, como a versão {same.id}.")
        values = {
            "version": version, "tag": tag, "service_url": service_url, "metadata_": metadata,
            "author": context.actor, "created_at": _now(), "status": "draft",
        }  # fmt: skip
        columns = {("metadata" if k == "metadata_" else k): v for k, v in values.items()}
        row = ModelVersionRow(id=_insert(connection, ModelVersionRow.__table__, columns), **values)
        audit.append(
            connection,
            audit.event(
                context,
                "model_version.create",
                target_type="model_version",
                target_id=str(row.id),
                details={"version": version, "tag": tag, "service_url": service_url},
            ),
        )
    return row


def model_versions(engine: Engine) -> list[ModelVersionRow]:
    with engine.connect() as connection:
        rows = connection.execute(select(ModelVersionRow.__table__).order_by(ModelVersionRow.id.desc())).all()
    return [_model_row(row) for row in rows]


def model_version(engine: Engine, version_id: int) -> ModelVersionRow | None:
    with engine.connect() as connection:
        row = connection.execute(select(ModelVersionRow.__table__).where(ModelVersionRow.id == version_id)).first()
    return _model_row(row) if row is not None else None


def _model_row(row: Any) -> ModelVersionRow:
    values = dict(row._mapping)
    values["metadata_"] = values.pop("metadata")
    return ModelVersionRow(**values)


def _insert(connection: Connection, table: Any, values: dict[str, Any]) -> int:
    """Insert one row; its generated id."""
    key: int = connection.execute(insert(table).values(**values)).inserted_primary_key[0]  # type: ignore[index]
    return key


def versions(engine: Engine) -> list[PolicyVersionRow]:
    with engine.connect() as connection:
        return [
            PolicyVersionRow(**row._mapping)
            for row in connection.execute(select(PolicyVersionRow).order_by(PolicyVersionRow.id.desc()))
        ]


def version(engine: Engine, version_id: int) -> PolicyVersionRow | None:
    with engine.connect() as connection:
        row = connection.execute(select(PolicyVersionRow).where(PolicyVersionRow.id == version_id)).first()
    return PolicyVersionRow(**row._mapping) if row is not None else None


def _version_row(connection: Connection, version_id: int) -> Any:
    row = connection.execute(
        select(PolicyVersionRow).where(PolicyVersionRow.id == version_id).with_for_update()
    ).first()
    if row is None:
        raise ReleaseRefused("not_found", "Versão de política não encontrada.", status_code=404)
    return row


def _model_version_row(connection: Connection, version_id: int) -> Any:
    row = connection.execute(
        select(ModelVersionRow.id, ModelVersionRow.version, ModelVersionRow.author, ModelVersionRow.status)
        .where(ModelVersionRow.id == version_id)
        .with_for_update()
    ).first()
    if row is None:
        raise ReleaseRefused("not_found", "Versão de modelo não encontrada.", status_code=404)
    return row


def _challenger_row(connection: Connection, challenger_id: int) -> Any:
    row = connection.execute(select(ChallengerRow).where(ChallengerRow.id == challenger_id).with_for_update()).first()
    if row is None:
        raise ReleaseRefused("not_found", "Desafiante não encontrado.", status_code=404)
    return row


def _newest_release(connection: Connection) -> Any:
    release = connection.execute(select(ReleaseRow).order_by(ReleaseRow.id.desc()).limit(1).with_for_update()).first()
    if release is None:
        raise ReleaseRefused("not_seeded", "Nenhuma política foi liberada ainda.")
    return release


def start_challenger(
    engine: Engine, version_id: int | None, *, model_version_id: int | None = None, context: audit.Context
) -> ChallengerRow:
    """Put a draft or candidate policy version, model version, or both, in shadow. One challenger at a time."""
    if version_id is None and model_version_id is None:
        raise ReleaseRefused(
            "nothing_to_challenge", "Indique uma versão de política, uma versão de modelo, ou ambas.", status_code=422
        )
    now = _now()
    with engine.begin() as connection:
        rows = []
        if version_id is not None:
            rows.append(("A versão de política", _version_row(connection, version_id)))
        if model_version_id is not None:
            rows.append(("A versão de modelo", _model_version_row(connection, model_version_id)))
        for what, row in rows:
            if row.status in ("live", "retired"):
                raise ReleaseRefused(
                    "not_candidate", f"{what} {row.id} está {_STATUS_WORDS[row.status]}: não pode ser desafiante."
                )
        active = connection.execute(
            select(ChallengerRow.id).where(ChallengerRow.stopped_at.is_(None)).with_for_update()
        ).first()
        if active is not None:
            raise ReleaseRefused(
                "challenger_active", f"O desafiante {active.id} ainda está ativo: encerre-o antes de iniciar outro."
            )
        values = {
            "policy_version_id": version_id, "model_version_id": model_version_id, "started_by": context.actor,
            "started_at": now,
        }  # fmt: skip
        challenger = ChallengerRow(id=_insert(connection, ChallengerRow, values), **values)
        if version_id is not None:
            connection.execute(
                update(PolicyVersionRow).where(PolicyVersionRow.id == version_id).values(status="candidate")
            )
        if model_version_id is not None:
            connection.execute(
                update(ModelVersionRow).where(ModelVersionRow.id == model_version_id).values(status="candidate")
            )
        audit.append(
            connection,
            audit.event(
                context,
                "challenger.start",
                target_type="challenger",
                target_id=str(challenger.id),
                details={"policy_version_id": version_id, "model_version_id": model_version_id},
            ),
        )
    return challenger


_STATUS_WORDS = {"live": "em produção", "retired": "aposentada", "draft": "em rascunho", "candidate": "candidata"}


def stop_challenger(engine: Engine, challenger_id: int, *, context: audit.Context) -> None:
    with engine.begin() as connection:
        row = _challenger_row(connection, challenger_id)
        if row.stopped_at is not None:
            raise ReleaseRefused("stopped", f"O desafiante {challenger_id} já foi encerrado.")
        _stop(connection, challenger_id, context.actor, "stopped")
        audit.append(
            connection,
            audit.event(context, "challenger.stop", target_type="challenger", target_id=str(challenger_id)),
        )


def _stop(connection: Connection, challenger_id: int, actor: str, outcome: str) -> None:
    connection.execute(
        update(ChallengerRow)
        .where(ChallengerRow.id == challenger_id, ChallengerRow.stopped_at.is_(None))
        .values(stopped_at=_now(), stopped_by=actor, outcome=outcome)
    )


def promote(
    engine: Engine, challenger_id: int, *, justification: str, context: audit.Context, switch_delay_s: float
) -> ReleaseRow:
    """Make the challenger's versions live, by someone other than the author of either (four eyes)."""
    _check_justification(justification)
    now = _now()
    with engine.begin() as connection:
        challenger = _challenger_row(connection, challenger_id)
        rows = []
        if challenger.policy_version_id is not None:
            rows.append(("A versão de política", _version_row(connection, challenger.policy_version_id)))
        if challenger.model_version_id is not None:
            rows.append(("A versão de modelo", _model_version_row(connection, challenger.model_version_id)))
        for _, row in rows:
            if row.author == context.actor:
                raise ReleaseRefused(
                    "four_eyes",
                    "Quem registrou a versão não pode promovê-la: outra pessoa precisa aprovar a mudança.",
                    status_code=403,
                )
        for what, row in rows:
            if row.status != "candidate":
                raise ReleaseRefused(
                    "not_candidate",
                    f"{what} {row.id} está {_STATUS_WORDS.get(row.status, row.status)}: só uma candidata é promovida.",
                )
        if challenger.stopped_at is not None and challenger.outcome != "stopped":
            raise ReleaseRefused("stopped", f"O desafiante {challenger_id} já terminou ({challenger.outcome}).")
        current = _newest_release(connection)
        policy_id = challenger.policy_version_id or current.policy_version_id
        model_id = challenger.model_version_id or current.model_version_id
        release = _release(
            connection, (policy_id, model_id), "promote", context.actor, justification, current, challenger_id, now,
            switch_delay_s, previous_id=current.id,
        )  # fmt: skip
        _switch(connection, current, live=(policy_id, model_id))
        _stop(connection, challenger_id, context.actor, "promoted")
        audit.append(
            connection,
            audit.event(
                context,
                "release.promote",
                target_type="release",
                target_id=str(release.id),
                details={
                    "release_id": release.id,
                    "challenger_id": challenger_id,
                    "policy_version_id": policy_id,
                    "model_version_id": model_id,
                    "previous_policy_version_id": current.policy_version_id,
                    "previous_model_version_id": current.model_version_id,
                    "effective_at": release.effective_at.isoformat(),
                    "justification": justification,
                },
            ),
        )
    return release


def rollback(engine: Engine, *, justification: str, context: audit.Context, switch_delay_s: float) -> ReleaseRow:
    """Return, in one step, to the pair the newest release replaced. Repeated, it walks further back."""
    _check_justification(justification)
    now = _now()
    with engine.begin() as connection:
        current = _newest_release(connection)
        if current.previous_id is None:
            raise ReleaseRefused("nothing_to_roll_back", "Não há liberação anterior para a qual voltar.")
        target = connection.execute(select(ReleaseRow).where(ReleaseRow.id == current.previous_id)).one()
        pair = (target.policy_version_id, target.model_version_id)
        release = _release(
            connection, pair, "rollback", context.actor, justification, current, None, now, switch_delay_s,
            previous_id=target.previous_id,
        )  # fmt: skip
        _switch(connection, current, live=pair)
        audit.append(
            connection,
            audit.event(
                context,
                "release.rollback",
                target_type="release",
                target_id=str(release.id),
                details={
                    "release_id": release.id,
                    "policy_version_id": target.policy_version_id,
                    "model_version_id": target.model_version_id,
                    "from_policy_version_id": current.policy_version_id,
                    "from_model_version_id": current.model_version_id,
                    "effective_at": release.effective_at.isoformat(),
                    "justification": justification,
                },
            ),
        )
    return release


def _switch(connection: Connection, current: Any, *, live: tuple[int, int | None]) -> None:
    """The current release's versions retire, the new pair's go live (a version in both stays live)."""
    for table, retired, new in (
        (PolicyVersionRow, current.policy_version_id, live[0]),
        (ModelVersionRow, current.model_version_id, live[1]),
    ):
        if retired is not None:
            connection.execute(update(table).where(table.id == retired).values(status="retired"))
        if new is not None:
            connection.execute(update(table).where(table.id == new).values(status="live"))


def _check_justification(text: str) -> None:
    # The rule of a review's justification (evaluation_api/reviews/rules.py), for callers other than the routes.
    problem = justification_problem(text)
    if problem is not None:
        raise ReleaseRefused("justification_too_short", problem, status_code=422)


def _release(
    connection: Connection,
    pair: tuple[int, int | None],
    action: str,
    actor: str,
    justification: str,
    current: Any,
    challenger_id: int | None,
    now: datetime,
    switch_delay_s: float,
    *,
    previous_id: int | None,
) -> ReleaseRow:
    # Never before the current release takes effect: two quick changes keep their order everywhere.
    effective_at = max(now + timedelta(seconds=switch_delay_s), as_utc(current.effective_at))
    values = {
        "policy_version_id": pair[0],
        "model_version_id": pair[1],
        "action": action,
        "actor": actor,
        "justification": justification,
        "previous_id": previous_id,
        "challenger_id": challenger_id,
        "created_at": now,
        "effective_at": effective_at,
    }
    return ReleaseRow(id=_insert(connection, ReleaseRow, values), **values)


def releases(engine: Engine, *, limit: int = 50) -> list[tuple[ReleaseRow, str, str | None]]:
    """The newest releases first, each with its policy's label and its model's version (None: the model
    MODEL_SERVICE_URL serves)."""
    query = (
        select(ReleaseRow, PolicyVersionRow.label, ModelVersionRow.version.label("model_version"))
        .join(PolicyVersionRow, PolicyVersionRow.id == ReleaseRow.policy_version_id)
        .outerjoin(ModelVersionRow, ModelVersionRow.id == ReleaseRow.model_version_id)
        .order_by(ReleaseRow.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [(_without_labels(ReleaseRow, row), row.label, row.model_version) for row in connection.execute(query)]


def _without_labels(table: Any, row: Any) -> Any:
    return table(**{k: v for k, v in row._mapping.items() if k not in ("label", "model_version")})


def challengers(engine: Engine) -> list[tuple[ChallengerRow, str | None, str | None]]:
    """Newest first, each with its policy's label and its model's version (None: the live one's)."""
    query = (
        select(ChallengerRow, PolicyVersionRow.label, ModelVersionRow.version.label("model_version"))
        .outerjoin(PolicyVersionRow, PolicyVersionRow.id == ChallengerRow.policy_version_id)
        .outerjoin(ModelVersionRow, ModelVersionRow.id == ChallengerRow.model_version_id)
        .order_by(ChallengerRow.id.desc())
    )
    with engine.connect() as connection:
        return [
            (_without_labels(ChallengerRow, row), row.label, row.model_version) for row in connection.execute(query)
        ]


def store_shadow(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    connection.execute(insert(ShadowDecisionRow), list(rows))


def report(engine: Engine, challenger_id: int) -> dict[str, Any]:
    """The swap set over live traffic: counts by live decision x challenger decision, overall and by (live)
    segment; with a challenger model, also the segment moves (live segment x challenger segment)."""
    with engine.connect() as connection:
        found = connection.execute(
            select(ChallengerRow, PolicyVersionRow.label, ModelVersionRow.version.label("model_version"))
            .outerjoin(PolicyVersionRow, PolicyVersionRow.id == ChallengerRow.policy_version_id)
            .outerjoin(ModelVersionRow, ModelVersionRow.id == ChallengerRow.model_version_id)
            .where(ChallengerRow.id == challenger_id)
        ).first()
        if found is None:
            raise ReleaseRefused("not_found", "Desafiante não encontrado.", status_code=404)
        moves = connection.execute(
            select(ShadowDecisionRow.segment_key, ShadowDecisionRow.challenger_segment_key, func.count())
            .where(ShadowDecisionRow.challenger_id == challenger_id)
            .group_by(ShadowDecisionRow.segment_key, ShadowDecisionRow.challenger_segment_key)
        ).all()
        counts = connection.execute(
            select(
                ShadowDecisionRow.segment_key,
                ShadowDecisionRow.live_decision,
                ShadowDecisionRow.decision,
                func.count(),
            )
            .where(ShadowDecisionRow.challenger_id == challenger_id)
            .group_by(ShadowDecisionRow.segment_key, ShadowDecisionRow.live_decision, ShadowDecisionRow.decision)
        ).all()
    challenger = _without_labels(ChallengerRow, found)
    segment_moves = {live: dict.fromkeys(SEGMENT_KEYS, 0) for live in SEGMENT_KEYS}
    for live, moved, n in moves:
        if live in segment_moves:
            segment_moves[live][moved or live] = segment_moves[live].get(moved or live, 0) + n
    return swap_report(counts) | {
        "challenger_id": challenger_id,
        "policy_version_id": challenger.policy_version_id,
        "policy_version": found.label,
        "model_version_id": challenger.model_version_id,
        "model_version": found.model_version,
        "segment_moves": segment_moves,
        "started_at": as_utc(challenger.started_at),
        "stopped_at": as_utc(challenger.stopped_at) if challenger.stopped_at else None,
        "backtests": backtests(engine, challenger_id),
    }


def swap_report(counts: Sequence[Any]) -> dict[str, Any]:
    """(segment, live decision, challenger decision, n) rows -> the swap matrix, overall and by segment,
    every cell present (zeros included) so that a reader sees the whole matrix."""
    matrix = {live: dict.fromkeys(DECISIONS, 0) for live in DECISIONS}
    by_segment = {key: {live: dict.fromkeys(DECISIONS, 0) for live in DECISIONS} for key in SEGMENT_KEYS}
    for segment, live, decision, n in counts:
        matrix[live][decision] += n
        if segment in by_segment:
            by_segment[segment][live][decision] += n
    total = sum(sum(row.values()) for row in matrix.values())
    changed = total - sum(matrix[d][d] for d in DECISIONS)
    return {"evaluations": total, "changed": changed, "swap": matrix, "by_segment": by_segment}


# --- backtests: a portfolio run whose policy B is a challenger's (portfolio/worker.py) ---------------------


@dataclass(frozen=True)
class ChallengerPolicy:
    """What a backtest needs of a challenger: whether it still runs, what it names, its policy's text."""

    challenger_id: int
    active: bool
    policy_version_id: int | None
    model_version_id: int | None
    text: str | None  # None: it names no policy (it decides with the live one)


def challenger_policy(engine: Engine, challenger_id: int) -> ChallengerPolicy | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(ChallengerRow, PolicyVersionRow.text)
            .outerjoin(PolicyVersionRow, PolicyVersionRow.id == ChallengerRow.policy_version_id)
            .where(ChallengerRow.id == challenger_id)
        ).first()
    if row is None:
        return None
    return ChallengerPolicy(row.id, row.stopped_at is None, row.policy_version_id, row.model_version_id, row.text)


MAX_BACKTESTS = 100


def backtests(engine: Engine, challenger_id: int) -> list[dict[str, Any]]:
    """The succeeded portfolio runs that named this challenger, newest first (at most MAX_BACKTESTS), each
    with its swap matrix overall and by segment in the shape of the live report (swap_report), from the
    run's summary (portfolio/summary.py `swap_by_segment`)."""
    query = (
        select(PortfolioRunRow)
        .where(PortfolioRunRow.challenger_id == challenger_id, PortfolioRunRow.status == "succeeded")
        .order_by(PortfolioRunRow.created_at.desc(), PortfolioRunRow.id)
        .limit(MAX_BACKTESTS)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = []
    for row in rows:
        summary = row.summary or {}
        counts = [
            (segment, live, decision, n)
            for segment, matrix in (summary.get("swap_by_segment") or {}).items()
            for live, by_decision in matrix.items()
            for decision, n in by_decision.items()
            if live in DECISIONS and decision in DECISIONS  # invalid rows have no segment: rows_invalid
        ]
        swap = swap_report(counts)
        found.append({
            "run_id": row.id, "file_name": row.file_name, "created_at": as_utc(row.created_at),
            "created_by": row.created_by, "rows_total": summary.get("rows_total", 0),
            "rows_invalid": summary.get("rows_invalid", 0), "changed": swap["changed"], "overall": swap["swap"],
            "by_segment": swap["by_segment"],
        })  # fmt: skip
    return found
