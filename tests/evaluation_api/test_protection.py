"""Protection at rest (LGPD art. 46): the key file, encryption and keyed hashes, what the database file
and its write-ahead log hold, and key rotation."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from evaluation_api.database import make_engine
from evaluation_api.identity.roles import Role
from evaluation_api.privacy import key_rotation as key_commands
from evaluation_api.privacy.encryption import (
    DataKeyError,
    DataKeys,
    KeyMaterial,
    load_data_keys,
    read_key_file,
    write_key_file,
)
from evaluation_api.records.table import EvaluationRow
from evaluation_api.reviews.store import ReviewCaseRow
from tests.utils.evaluations import SEGMENT_CUSTOMERS, TestClient, body
from tests.utils.identity import bearer, token

URL = "/api/v1/evaluations"
# Distinctive enough that finding it anywhere in the files can only mean it was stored in plain text.
NAME = "Xenofonte Quiriguá Zabdiel"
CUSTOMER_ID = "ZQX-CLIENTE-987123"


def test_the_key_file_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "var" / "data-keys.json"
    first = DataKeys.from_file(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = DataKeys.from_file(path, create=True)  # a second start: the same keys, not new ones
    assert second.material == first.material
    assert second.decrypt(first.encrypt("Maria")) == "Maria"
    # Two processes starting at once: the file that exists wins, nobody overwrites it.
    assert write_key_file(path, KeyMaterial.generate(), replace=False) is False
    assert read_key_file(path) == first.material


def test_a_missing_or_malformed_key_file_stops_with_a_message_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataKeyError, match=r"data-keys\.json"):
        DataKeys.from_file(tmp_path / "data-keys.json", create=False)
    bad = tmp_path / "bad.json"
    bad.write_text('{"encryption_keys": ["not-a-key"], "hash_key": "x"}', encoding="utf-8")
    with pytest.raises(DataKeyError, match=r"bad\.json"):
        DataKeys.from_file(bad)


def test_the_keys_may_come_from_the_environment_instead_of_a_file(
    start_app: Callable[..., Any], tmp_path: Path
) -> None:
    material = KeyMaterial.generate()
    with start_app(data_keys=material.dumps()) as client:
        created = client.post(URL, json=body(name=NAME)).json()
        assert client.get(f"{URL}/{created['id']}").json()["input"]["name"] == NAME
    assert not (tmp_path / "data-keys.json").exists()  # nothing generated
    with pytest.raises(DataKeyError, match="DATA_KEYS"):
        load_data_keys(content='{"encryption_keys": []}', path=tmp_path / "x.json", create=True)


def test_values_are_encrypted_with_a_fresh_iv_and_ids_hashed_with_the_key() -> None:
    keys = DataKeys(KeyMaterial.generate())
    one, two = keys.encrypt(NAME), keys.encrypt(NAME)
    assert one != two and NAME not in one
    assert keys.decrypt(one) == keys.decrypt(two) == NAME
    assert keys.customer_hash(CUSTOMER_ID) == keys.customer_hash(CUSTOMER_ID)
    assert len(keys.customer_hash(CUSTOMER_ID)) == 64
    other = DataKeys(KeyMaterial.generate())
    assert other.customer_hash(CUSTOMER_ID) != keys.customer_hash(CUSTOMER_ID)  # keyed: no dictionary attack
    with pytest.raises(DataKeyError):
        other.decrypt(one)


def _files(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()}


def _assert_nowhere(db: Path, secrets: list[str]) -> None:
    files = _files(db)
    assert db.name in files
    for name, data in files.items():
        for secret in secrets:
            for encoded in {secret.encode("utf-8"), secret.encode("utf-16-le"), secret.upper().encode("utf-8")}:
                assert encoded not in data, f"{secret!r} in plain text in {name}"


def test_the_database_file_and_its_wal_hold_no_name_or_customer_id_in_plain_text(
    client: TestClient, db_path: Path
) -> None:
    created = []
    for n, figures in enumerate(SEGMENT_CUSTOMERS.values()):
        response = client.post(URL, json=body(name=f"{NAME} {n}", customer_id=f"{CUSTOMER_ID}-{n}", **figures))
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])
    assert client.post("/avaliar", json={"name": NAME, **SEGMENT_CUSTOMERS["least_active"]}).status_code == 200
    # The app reads them back, so they are there.
    assert client.get(f"{URL}/{created[0]}").json()["input"]["name"] == f"{NAME} 0"

    # Before a checkpoint the new pages are in the WAL; after one, in the database file.
    assert (db_path.parent / (db_path.name + "-wal")).stat().st_size > 0
    _assert_nowhere(db_path, [NAME, CUSTOMER_ID])
    with sqlite3.connect(db_path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _assert_nowhere(db_path, [NAME, CUSTOMER_ID])


def _stored_values(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(EvaluationRow.customer_name, EvaluationRow.customer_id)).all()
            cases = connection.execute(select(ReviewCaseRow.history)).scalars().all()
    finally:
        engine.dispose()
    return [v for row in rows for v in row if v is not None] + list(cases)


def test_key_rotation_reencrypts_every_value_and_keeps_them_readable_all_along(
    start_app: Callable[..., Any], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'evaluations.db'}"
    key_file = tmp_path / "data-keys.json"
    with start_app() as client:
        ids = [
            client.post(URL, json=body(name=f"{NAME} {n}", customer_id=f"C-{n}", **figures)).json()["id"]
            for n, figures in enumerate(SEGMENT_CUSTOMERS.values())
        ]
        old = DataKeys.from_file(key_file)
        before = _stored_values(database_url)
        assert len(before) == 2 * len(ids) + 2  # names, ids, and the two `review` decisions' cases

        engine = make_engine(database_url)
        try:
            changed = key_commands.rotate(engine, key_file)
        finally:
            engine.dispose()
        assert changed == len(ids) + 2
        rotated = read_key_file(key_file)
        assert len(rotated.encryption_keys) == 2 and rotated.encryption_keys[1:] == old.material.encryption_keys
        after = _stored_values(database_url)
        assert set(after).isdisjoint(before)
        new_only = DataKeys(rotated.primary_only())
        assert [new_only.decrypt(v) for v in after[: 2 * len(ids)]] == [old.decrypt(v) for v in before[: 2 * len(ids)]]
        # The app started before the rotation still reads every record (it re-reads the key file).
        for n, evaluation_id in enumerate(ids):
            assert client.get(f"{URL}/{evaluation_id}").json()["input"]["name"] == f"{NAME} {n}"
        # Having re-read the key file, it writes under the new key.
        late = client.post(URL, json=body(name="Escrito Depois", customer_id="C-late")).json()["id"]

    engine = make_engine(database_url)
    try:
        # A process that has not re-read the key file yet still writes under the old key: `retire`
        # re-encrypts what it wrote before it drops the old key.
        with engine.begin() as connection:
            connection.execute(
                update(EvaluationRow).where(EvaluationRow.id == ids[0]).values(customer_name=old.encrypt(f"{NAME} 0"))
            )
        assert key_commands.retire(engine, key_file) == 1
        assert key_commands.rotate(engine, key_file) == len(ids) + 3  # a second rotation: nothing left behind
        assert key_commands.retire(engine, key_file) == 0
    finally:
        engine.dispose()
    assert len(read_key_file(key_file).encryption_keys) == 1
    with pytest.raises(DataKeyError):
        DataKeys(old.material).decrypt(_stored_values(database_url)[0])
    with start_app(as_role=None) as client:  # the same database: the account `analyst` exists already
        client.headers.update(bearer(token(client, "analyst", Role.ANALYST)))
        assert client.get(f"{URL}/{late}").json()["input"]["name"] == "Escrito Depois"
        assert client.get(f"{URL}/{ids[0]}").json()["input"]["customer_id"] == "C-0"


def test_generate_prints_a_new_valid_key_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert key_commands.main(["generate"]) == 0
    printed = capsys.readouterr().out
    material = KeyMaterial.parse(printed, source="stdout")
    assert len(material.encryption_keys) == 1
    assert KeyMaterial.parse(printed, source="stdout") != KeyMaterial.generate()


def test_the_rotation_command_line_names_what_it_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'evaluations.db'}")
    monkeypatch.setenv("DATA_KEYS_PATH", str(tmp_path / "data-keys.json"))
    from evaluation_api import config, migrate

    config.get_settings.cache_clear()
    try:
        assert migrate.main([]) == 0
        DataKeys.from_file(tmp_path / "data-keys.json", create=True)  # what the API's first start does
        assert key_commands.main(["rotate"]) == 0
        assert len(read_key_file(tmp_path / "data-keys.json").encryption_keys) == 2
        assert key_commands.main(["retire"]) == 0
        assert len(read_key_file(tmp_path / "data-keys.json").encryption_keys) == 1
    finally:
        config.get_settings.cache_clear()


def test_upgrading_a_database_with_plain_text_records_encrypts_them_and_opens_their_review_cases(
    tmp_path: Path,
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from evaluation_api.config import PACKAGE_DIR
    from evaluation_api.migrate import upgrade

    db = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        config = Config()
        config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")  # the schema before protection at rest
        columns = (
            "id, request_id, channel, customer_name, customer_id, balance, purchases, cash_advance, credit_limit, "
            "payments, segment_id, segment_key, distances, decision, reasons, model_name, model_version, "
            "policy_version, evaluated_at, created_at"
        )
        with engine.begin() as connection:
            for n, decision in enumerate(["review", "approved"]):
                connection.execute(
                    text(
                        f"INSERT INTO evaluations ({columns}) VALUES (:id, 'r', 'api', :name, :cid, 1, 1, 1, 1, 1, 0,"
                        " 'high_limit_revolvers', '[]', :decision, '[]', 'm', 'v', 'p', '2026-01-01 00:00:00',"
                        " '2026-01-01 00:00:00')"
                    ),
                    {"id": f"old-{n}", "name": f"{NAME} {n}", "cid": f"{CUSTOMER_ID}-{n}", "decision": decision},
                )
        keys = DataKeys.from_file(tmp_path / "data-keys.json", create=True)
        upgrade(engine, data_keys=keys)
        with engine.connect() as connection:
            rows = connection.execute(
                select(EvaluationRow.id, EvaluationRow.customer_name, EvaluationRow.customer_id_hash).order_by(
                    EvaluationRow.id
                )
            ).all()
            cases = connection.execute(select(ReviewCaseRow.evaluation_id, ReviewCaseRow.status)).all()
    finally:
        engine.dispose()
    assert [(i, keys.decrypt(name), h) for i, name, h in rows] == [
        (f"old-{n}", f"{NAME} {n}", keys.customer_hash(f"{CUSTOMER_ID}-{n}")) for n in range(2)
    ]
    assert cases == [("old-0", "open")]  # the `review` decision got its case, the approved one none
    # The plain text the old rows held is gone from the file and its WAL, not only from the table
    # (secure_delete zeroes the pages the migration's table rebuild frees).
    _assert_nowhere(db, [NAME, CUSTOMER_ID])
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _assert_nowhere(db, [NAME, CUSTOMER_ID])
