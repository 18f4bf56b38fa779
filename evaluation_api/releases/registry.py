"""The registry of policy versions and the change-control flow over it, in the records database:

    register (draft) -> start a challenger (candidate, decides in shadow) -> promote (live, four eyes)
                                                                            -> rollback (one step back)

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
from evaluation_api.releases.table import ChallengerRow, PolicyVersionRow, ReleaseRow, ShadowDecisionRow
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
class State:
    """What decides now, in one read: the newest release (from its effective_at) and the active challenger."""

    release_id: int
    effective_at: datetime
    live: Version
    challenger_id: int | None
    challenger: Version | None


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


def state(engine: Engine, cache: dict[int, Version] | None = None) -> State:
    """The newest release and the active challenger. `cache` (version id -> Version) spares parsing a
    version this process already holds: the poll runs twice a second in every process."""
    cache = cache if cache is not None else {}
    with engine.connect() as connection:
        release = connection.execute(select(ReleaseRow).order_by(ReleaseRow.id.desc()).limit(1)).first()
        if release is None:
            raise LookupError("no policy was ever released: the API seeds version 1 at its first start")
        challenger = connection.execute(
            select(ChallengerRow.id, ChallengerRow.policy_version_id).where(ChallengerRow.stopped_at.is_(None)).limit(1)
        ).first()
        wanted = {release.policy_version_id} | ({challenger.policy_version_id} if challenger else set())
        for row in connection.execute(select(PolicyVersionRow).where(PolicyVersionRow.id.in_(wanted - set(cache)))):
            cache[row.id] = _version(row)
    return State(
        release_id=release.id,
        effective_at=as_utc(release.effective_at),
        live=cache[release.policy_version_id],
        challenger_id=challenger.id if challenger else None,
        challenger=cache[challenger.policy_version_id] if challenger else None,
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


def start_challenger(engine: Engine, version_id: int, *, context: audit.Context) -> ChallengerRow:
    """Put a draft or candidate version in shadow. One challenger at a time."""
    now = _now()
    with engine.begin() as connection:
        row = _version_row(connection, version_id)
        if row.status in ("live", "retired"):
            raise ReleaseRefused(
                "not_candidate", f"A versão {version_id} está {_STATUS_WORDS[row.status]}: não pode ser desafiante."
            )
        active = connection.execute(
            select(ChallengerRow.id).where(ChallengerRow.stopped_at.is_(None)).with_for_update()
        ).first()
        if active is not None:
            raise ReleaseRefused(
                "challenger_active", f"O desafiante {active.id} ainda está ativo: encerre-o antes de iniciar outro."
            )
        values = {"policy_version_id": version_id, "started_by": context.actor, "started_at": now}
        challenger = ChallengerRow(id=_insert(connection, ChallengerRow, values), **values)
        connection.execute(update(PolicyVersionRow).where(PolicyVersionRow.id == version_id).values(status="candidate"))
        audit.append(
            connection,
            audit.event(
                context,
                "challenger.start",
                target_type="challenger",
                target_id=str(challenger.id),
                details={"policy_version_id": version_id, "label": row.label},
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
    """Make the challenger's version live, by someone other than its author (four eyes)."""
    _check_justification(justification)
    now = _now()
    with engine.begin() as connection:
        challenger = _challenger_row(connection, challenger_id)
        row = _version_row(connection, challenger.policy_version_id)
        if row.author == context.actor:
            raise ReleaseRefused(
                "four_eyes",
                "Quem registrou a versão não pode promovê-la: outra pessoa precisa aprovar a mudança.",
                status_code=403,
            )
        if row.status != "candidate":
            raise ReleaseRefused(
                "not_candidate",
                f"A versão {row.id} está {_STATUS_WORDS.get(row.status, row.status)}: só uma candidata é promovida.",
            )
        if challenger.stopped_at is not None and challenger.outcome != "stopped":
            raise ReleaseRefused("stopped", f"O desafiante {challenger_id} já terminou ({challenger.outcome}).")
        current = _newest_release(connection)
        release = _release(
            connection, row.id, "promote", context.actor, justification, current, challenger_id, now, switch_delay_s,
            previous_id=current.id,
        )  # fmt: skip
        _switch(connection, retired=current.policy_version_id, live=row.id)
        _stop(connection, challenger_id, context.actor, "promoted")
        audit.append(
            connection,
            audit.event(
                context,
                "release.promote",
                target_type="policy_version",
                target_id=str(row.id),
                details={
                    "release_id": release.id,
                    "challenger_id": challenger_id,
                    "previous_policy_version_id": current.policy_version_id,
                    "effective_at": release.effective_at.isoformat(),
                    "justification": justification,
                },
            ),
        )
    return release


def rollback(engine: Engine, *, justification: str, context: audit.Context, switch_delay_s: float) -> ReleaseRow:
    """Return, in one step, to the version the newest release replaced. Repeated, it walks further back."""
    _check_justification(justification)
    now = _now()
    with engine.begin() as connection:
        current = _newest_release(connection)
        if current.previous_id is None:
            raise ReleaseRefused("nothing_to_roll_back", "Não há liberação anterior para a qual voltar.")
        target = connection.execute(select(ReleaseRow).where(ReleaseRow.id == current.previous_id)).one()
        release = _release(
            connection, target.policy_version_id, "rollback", context.actor, justification, current, None, now,
            switch_delay_s, previous_id=target.previous_id,
        )  # fmt: skip
        _switch(connection, retired=current.policy_version_id, live=target.policy_version_id)
        audit.append(
            connection,
            audit.event(
                context,
                "release.rollback",
                target_type="policy_version",
                target_id=str(target.policy_version_id),
                details={
                    "release_id": release.id,
                    "from_policy_version_id": current.policy_version_id,
                    "effective_at": release.effective_at.isoformat(),
                    "justification": justification,
                },
            ),
        )
    return release


def _switch(connection: Connection, *, retired: int, live: int) -> None:
    connection.execute(update(PolicyVersionRow).where(PolicyVersionRow.id == retired).values(status="retired"))
    connection.execute(update(PolicyVersionRow).where(PolicyVersionRow.id == live).values(status="live"))


def _check_justification(text: str) -> None:
    # The rule of a review's justification (evaluation_api/reviews/rules.py), for callers other than the routes.
    problem = justification_problem(text)
    if problem is not None:
        raise ReleaseRefused("justification_too_short", problem, status_code=422)


def _release(
    connection: Connection,
    version_id: int,
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
        "policy_version_id": version_id,
        "action": action,
        "actor": actor,
        "justification": justification,
        "previous_id": previous_id,
        "challenger_id": challenger_id,
        "created_at": now,
        "effective_at": effective_at,
    }
    return ReleaseRow(id=_insert(connection, ReleaseRow, values), **values)


def releases(engine: Engine, *, limit: int = 50) -> list[tuple[ReleaseRow, str]]:
    """The newest releases first, each with its version's label."""
    query = (
        select(ReleaseRow, PolicyVersionRow.label)
        .join(PolicyVersionRow, PolicyVersionRow.id == ReleaseRow.policy_version_id)
        .order_by(ReleaseRow.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [(_without_label(ReleaseRow, row), row.label) for row in connection.execute(query)]


def _without_label(table: Any, row: Any) -> Any:
    return table(**{k: v for k, v in row._mapping.items() if k != "label"})


def challengers(engine: Engine) -> list[tuple[ChallengerRow, str]]:
    query = (
        select(ChallengerRow, PolicyVersionRow.label)
        .join(PolicyVersionRow, PolicyVersionRow.id == ChallengerRow.policy_version_id)
        .order_by(ChallengerRow.id.desc())
    )
    with engine.connect() as connection:
        return [(_without_label(ChallengerRow, row), row.label) for row in connection.execute(query)]


def store_shadow(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    connection.execute(insert(ShadowDecisionRow), list(rows))


def report(engine: Engine, challenger_id: int) -> dict[str, Any]:
    """The swap set over live traffic: counts by live decision x challenger decision, overall and by segment."""
    with engine.connect() as connection:
        found = connection.execute(
            select(ChallengerRow, PolicyVersionRow.label)
            .join(PolicyVersionRow, PolicyVersionRow.id == ChallengerRow.policy_version_id)
            .where(ChallengerRow.id == challenger_id)
        ).first()
        if found is None:
            raise ReleaseRefused("not_found", "Desafiante não encontrado.", status_code=404)
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
    challenger = _without_label(ChallengerRow, found)
    return swap_report(counts) | {
        "challenger_id": challenger_id,
        "policy_version_id": challenger.policy_version_id,
        "policy_version": found.label,
        "started_at": as_utc(challenger.started_at),
        "stopped_at": as_utc(challenger.stopped_at) if challenger.stopped_at else None,
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
