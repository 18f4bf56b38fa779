"""Decision records on each database: the migrations, records written through the API and read back
(over HTTP and with SQLAlchemy directly), timestamps, JSON columns, and no half-written rows.

SQLite always; PostgreSQL when DATABASE_URL names a server (CI's second pass, `-m postgres`), each test
on a database of its own, dropped at the end of the session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, make_url, select, text

from evaluation_api.config import PACKAGE_DIR
from evaluation_api.database import Base, make_engine
from evaluation_api.main import create_app
from evaluation_api.migrate import upgrade
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from models import FEATURES
from tests.utils.evaluations import SEGMENT_CUSTOMERS, ModelServiceStub, body, make_settings
from tests.utils.identity import analyst_headers

URL = "/api/v1/evaluations"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    new: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return new()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine of the test's own on the database (not the app's)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


# The customer's name is stored encrypted: a trigger recognises the refused records by a figure instead.
REFUSED_CASH_ADVANCE = 13.13


def refuse_inserts_of(engine: Engine) -> None:
    """A trigger that makes the database refuse the records with cash_advance = REFUSED_CASH_ADVANCE (a
    failing disk, a constraint)."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON evaluations "
                    f"WHEN NEW.cash_advance = {REFUSED_CASH_ADVANCE} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.cash_advance = {REFUSED_CASH_ADVANCE} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; "
                    "END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON evaluations FOR EACH ROW EXECUTE FUNCTION refuse()")
            )


def refused_or_not(name: str) -> dict[str, Any]:
    return body(name=name, cash_advance=REFUSED_CASH_ADVANCE) if name == "Recusado" else body(name=name)


def as_utc(moment: datetime) -> datetime:
    """What a backend returns, as an aware UTC datetime: PostgreSQL keeps the zone, SQLite returns naive UTC."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- migrations --------------------------------------------------------------------------------------


def test_migrations_bring_a_fresh_database_to_head_matching_the_model(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)  # idempotent: a second rollout's init container changes nothing
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        # The migration and the ORM model describe the same table, column for column and index for index.
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    columns = {c["name"]: c for c in inspect(engine).get_columns("evaluations")}
    assert set(columns) == set(EvaluationRow.__table__.columns.keys())
    # Nullable: what anonymisation erases, and when it did; who created it and its explanation (older
    # records: none).
    assert sorted(name for name, c in columns.items() if c["nullable"]) == [
        "anonymized_at",
        "created_by",
        "customer_id",
        "customer_id_hash",
        "customer_name",
        "explanation",
    ]


# --- written through the API, read back --------------------------------------------------------------


def test_records_written_through_the_api_read_back_identical(
    start_app: Callable[..., Any], engine: Engine, database_url: str, tmp_path: Path
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = [
        (URL, body(name=f"Cliente {key}", customer_id=f"C-{n}", **figures))
        for n, (key, figures) in enumerate(SEGMENT_CUSTOMERS.items())
    ]
    # Every hard rule (pt-BR reasons with R$ amounts), accents in the name, no customer_id, the legacy route.
    sent.append(
        (
            URL,
            body(
                name="Zélia Quasímodo D'Ávila",
                balance=98765.43,
                cash_advance=87654.32,
                credit_limit=1234.56,
                payments=0,
            ),
        )
    )
    sent.append(("/avaliar", {"name": "João Legado", **SEGMENT_CUSTOMERS["least_active"]}))

    with start_app(database_url=database_url) as client:
        created = []
        for n, (url, data) in enumerate(sent):
            response = client.post(url, json=data, headers={"X-Request-ID": f"rec-{n}"})
            assert response.status_code in (200, 201), response.text
            created.append(response.json())
        records = {c["id"]: client.get(f"{URL}/{c['id']}").json() for c in created}

    with engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(select(EvaluationRow.__table__))}
    assert set(rows) == set(records)
    keys = DataKeys.from_file(make_settings(tmp_path).data_keys_file())

    for n, ((url, data), answer) in enumerate(zip(sent, created, strict=True)):
        record, row = records[answer["id"]], rows[answer["id"]]
        # Over HTTP: the record is what was sent and what was answered.
        assert record["request_id"] == row.request_id == f"rec-{n}"
        assert record["channel"] == row.channel == ("legacy" if url == "/avaliar" else "api")
        assert record["input"] == {"customer_id": None, **data, **{f: float(data[f]) for f in FEATURES}}
        assert record["decision"] == answer["decision"] == row.decision
        if url == URL:
            for key in ("segment", "reasons", "model", "policy_version", "evaluated_at"):
                assert record[key] == answer[key], key
        # Timestamps: aware UTC over HTTP, the same instant in the database.
        for key in ("evaluated_at", "created_at"):
            moment = datetime.fromisoformat(record[key])
            assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
            assert as_utc(getattr(row, key)) == moment
        if engine.dialect.name == "postgresql":
            assert row.evaluated_at.tzinfo is not None
        # JSON columns round-trip: floats, pt-BR text.
        assert row.distances == record["distances"] and all(isinstance(d, float) for d in row.distances)
        assert row.reasons == record["reasons"]
        # Personal data is stored encrypted, and decrypts to what was sent.
        assert row.customer_name != data["name"].strip()
        assert keys.decrypt(row.customer_name) == data["name"].strip()
        assert (row.balance, row.purchases, row.cash_advance, row.credit_limit, row.payments) == tuple(
            float(data[f]) for f in FEATURES
        )

    rules = records[created[5]["id"]]["reasons"]
    assert [r["code"] for r in rules][1:] == [
        "ZERO_PAYMENTS_WITH_BALANCE",
        "BALANCE_FAR_ABOVE_LIMIT",
        "CASH_ADVANCE_ABOVE_LIMIT",
    ]
    assert rules[2]["message"] == "Saldo devedor (R$ 98.765,43) acima de 150% do limite de crédito (R$ 1.234,56)."


async def test_no_half_written_rows_when_some_records_are_refused(
    tmp_path: Path, stub: ModelServiceStub, database_url: str, engine: Engine
) -> None:
    """The database refuses some records: one at a time, exactly those fail; in a burst, every 201 has its row,
    every 503 none, and no row is missing a column (a group commit is all or nothing, so a refused record
    may take the others of its group with it: they are answered 503 too, never 201 without a row)."""
    app = create_app(stub.settings(make_settings(tmp_path, database_url=database_url)))
    stub.delay_s = 0.01
    async with app.router.lifespan_context(app):
        refuse_inserts_of(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=analyst_headers(app)
        ) as client:
            one_by_one = [
                await client.post(URL, json=refused_or_not(name), headers={"X-Request-ID": f"seq-{n}"})
                for n, name in enumerate(["Aceito", "Recusado", "Aceito"])
            ]
            assert [r.status_code for r in one_by_one] == [201, 503, 201]
            burst = await asyncio.gather(
                *(
                    client.post(
                        URL,
                        json=refused_or_not("Recusado" if i % 5 == 0 else f"Aceito {i}"),
                        headers={"X-Request-ID": f"half-{i}"},
                    )
                    for i in range(30)
                )
            )
    responses = one_by_one + burst
    statuses = {r.headers["x-request-id"]: r.status_code for r in responses}
    assert {s for rid, s in statuses.items() if rid.startswith("half-") and int(rid[5:]) % 5 == 0} == {503}
    assert set(statuses.values()) <= {201, 503}
    assert all(r.json()["error"] == "database_unavailable" for r in responses if r.status_code == 503)

    with engine.connect() as connection:
        rows = connection.execute(select(EvaluationRow.__table__)).all()
        nulls = connection.execute(
            select(func.count())
            .select_from(EvaluationRow.__table__)
            .where(
                EvaluationRow.decision.is_(None) | EvaluationRow.distances.is_(None) | EvaluationRow.reasons.is_(None)
            )
        ).scalar_one()
    assert sorted(row.request_id for row in rows) == sorted(rid for rid, s in statuses.items() if s == 201)
    assert {r.json()["id"] for r in responses if r.status_code == 201} == {row.id for row in rows}
    assert nulls == 0


@pytest.mark.postgres
def test_timestamps_read_back_in_utc_whatever_the_servers_time_zone(
    start_app: Callable[..., Any], postgres_databases: Callable[[], str]
) -> None:
    url = make_url(postgres_databases()).update_query_dict({"options": "-c TimeZone=America/Sao_Paulo"})
    with start_app(database_url=url.render_as_string(hide_password=False)) as client:
        created = client.post(URL, json=body())
        assert created.status_code == 201, created.text
        record = client.get(f"{URL}/{created.json()['id']}").json()
    assert record["evaluated_at"] == created.json()["evaluated_at"]
    assert record["evaluated_at"].endswith("Z") and record["created_at"].endswith("Z")


def test_a_fresh_app_on_an_existing_database_reads_the_old_records(
    start_app: Callable[..., Any], database_url: str
) -> None:
    with start_app(database_url=database_url) as client:
        created = client.post(URL, json=body(), headers={"X-Request-ID": "restart-1"}).json()
    with start_app(database_url=database_url) as client:  # migrations already applied: nothing to do
        record = client.get(f"{URL}/{created['id']}")
    assert record.status_code == 200
    assert record.json()["request_id"] == "restart-1"
    assert record.json()["evaluated_at"] == created["evaluated_at"]
