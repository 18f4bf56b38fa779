"""Import into BentoML's store: the integrity check comes before any unpickling, and importing is idempotent.

Store-touching tests run BentoML in subprocesses on a temporary BENTOML_HOME (tests/utils/store.py):
the project's .bentoml is never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models import CARD_PATH, MODEL_NAME, PICKLE_PATH
from models.import_model import IntegrityError, read_card, verify, version_of
from models.train import sha256_of, train
from tests.utils.artifacts import code_running_pickle
from tests.utils.data import write_cc_general_csv
from tests.utils.servers import ROOT, project_env
from tests.utils.store import IsolatedStore

COMMITTED_SHA256 = sha256_of(PICKLE_PATH)
COMMITTED_TAG = f"{MODEL_NAME}:{COMMITTED_SHA256[:16]}"


def _malicious_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(code_running_pickle(marker))
    return path


def _flip_byte(source: Path, target: Path, *, at: int) -> Path:
    data = bytearray(source.read_bytes())
    data[at] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def _truncate(source: Path, target: Path, *, size: int) -> Path:
    target.write_bytes(source.read_bytes()[:size])
    return target


# --- the pure checks, in process ------------------------------------------------------------------


def test_version_is_the_first_16_hex_digits_of_the_pickles_sha256() -> None:
    assert version_of(COMMITTED_SHA256) == COMMITTED_SHA256[:16]
    assert len(version_of(COMMITTED_SHA256)) == 16


def test_the_committed_pickle_matches_its_card() -> None:
    assert verify(PICKLE_PATH, read_card(CARD_PATH)) == COMMITTED_SHA256


@pytest.mark.parametrize(
    "damage",
    ["first byte flipped", "middle byte flipped", "last byte flipped", "last byte cut", "half cut", "emptied"],
)
def test_a_damaged_pickle_fails_verification(tmp_path: Path, damage: str) -> None:
    size = PICKLE_PATH.stat().st_size
    target = tmp_path / PICKLE_PATH.name
    {
        "first byte flipped": lambda: _flip_byte(PICKLE_PATH, target, at=0),
        "middle byte flipped": lambda: _flip_byte(PICKLE_PATH, target, at=size // 2),
        "last byte flipped": lambda: _flip_byte(PICKLE_PATH, target, at=size - 1),
        "last byte cut": lambda: _truncate(PICKLE_PATH, target, size=size - 1),
        "half cut": lambda: _truncate(PICKLE_PATH, target, size=size // 2),
        "emptied": lambda: _truncate(PICKLE_PATH, target, size=0),
    }[damage]()
    with pytest.raises(IntegrityError, match="does not match the model card"):
        verify(target, read_card(CARD_PATH))


def test_a_missing_pickle_fails_verification(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="pickle not found"):
        verify(tmp_path / "absent.pkl", read_card(CARD_PATH))


@pytest.mark.parametrize(
    ("card_text", "problem"),
    [
        (None, "model card not found"),
        ("{not json", "not valid JSON"),
        (
            json.dumps({"features": ["balance", "purchases", "cash_advance", "credit_limit", "payments"]}),
            "lacks pickle_sha256",
        ),
        (
            json.dumps(
                {
                    "pickle_sha256": "0" * 64,
                    "features": ["purchases", "balance", "cash_advance", "credit_limit", "payments"],
                }
            ),
            "other features",
        ),
    ],
)
def test_a_bad_card_is_refused(tmp_path: Path, card_text: str | None, problem: str) -> None:
    card = tmp_path / "model_card.json"
    if card_text is not None:
        card.write_text(card_text, encoding="utf-8")
    with pytest.raises(IntegrityError, match=problem):
        read_card(card)


# --- refusals leave the store as it was, and nothing is unpickled -----------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> IsolatedStore:
    """An isolated store holding the committed model, imported as `make import` does (the CLI, defaults);
    shared by the refusal tests, which must not change it."""
    store = IsolatedStore(home=tmp_path_factory.mktemp("bentoml_home"))
    result = store.import_cli()
    assert result.returncode == 0, result.stderr
    assert f"imported {COMMITTED_TAG}" in result.stderr
    return store


@pytest.mark.parametrize("damage", ["one byte flipped", "truncated"])
def test_a_damaged_pickle_is_refused_and_nothing_is_imported(store: IsolatedStore, tmp_path: Path, damage: str) -> None:
    size = PICKLE_PATH.stat().st_size
    target = tmp_path / PICKLE_PATH.name
    if damage == "one byte flipped":
        _flip_byte(PICKLE_PATH, target, at=size // 3)
    else:
        _truncate(PICKLE_PATH, target, size=size - 100)
    before = store.snapshot()

    outcome = store.import_model(pickle_path=target, card_path=CARD_PATH)

    assert outcome.error == "IntegrityError"
    assert "Nothing was imported" in outcome.message
    assert store.snapshot() == before


def test_a_refused_pickle_is_never_unpickled(store: IsolatedStore, tmp_path: Path) -> None:
    # Control: this pickle does run code when loaded the way import_model loads a pickle.
    control_marker = tmp_path / "control-was-unpickled"
    control = _malicious_pickle(tmp_path / "control.pkl", control_marker)
    subprocess.run(
        [sys.executable, "-c", "import joblib, sys; joblib.load(sys.argv[1])", str(control)],
        cwd=ROOT,
        env=project_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert control_marker.is_dir()

    marker = tmp_path / "was-unpickled"
    malicious = _malicious_pickle(tmp_path / PICKLE_PATH.name, marker)
    before_files, before_tags = store.snapshot(), store.tags()

    outcome = store.import_model(pickle_path=malicious, card_path=CARD_PATH)

    assert outcome.error == "IntegrityError"
    assert not marker.exists(), "the pickle was unpickled before its integrity was checked"
    assert store.snapshot() == before_files
    assert store.tags() == before_tags == [COMMITTED_TAG]


def test_the_cli_refuses_with_exit_code_2(store: IsolatedStore, tmp_path: Path) -> None:
    tampered = _flip_byte(PICKLE_PATH, tmp_path / PICKLE_PATH.name, at=100)
    before = store.snapshot()

    result = store.import_cli("--pickle", str(tampered), "--card", str(CARD_PATH))

    assert result.returncode == 2
    assert "import refused" in result.stderr
    assert store.snapshot() == before


# --- idempotency and versions ------------------------------------------------------------------------


@pytest.fixture
def new_model(tmp_path: Path) -> tuple[Path, Path]:
    """Another pickle and its card: trained on a small synthetic CSV."""
    out = tmp_path / "new_model"
    train(data_path=write_cc_general_csv(tmp_path / "cc.csv", n=300, seed=3), out_dir=out)
    return out / PICKLE_PATH.name, out / CARD_PATH.name


def test_importing_twice_is_a_no_op_and_a_new_pickle_becomes_latest(
    tmp_path: Path, new_model: tuple[Path, Path]
) -> None:
    store = IsolatedStore(home=tmp_path / "bentoml_home")

    first = store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)
    after_first = store.snapshot()
    second = store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)

    assert (first.tag, first.created) == (COMMITTED_TAG, True)
    assert (second.tag, second.created) == (COMMITTED_TAG, False)
    assert store.snapshot() == after_first
    assert store.tags() == [COMMITTED_TAG]

    new_pickle, new_card = new_model
    new_tag = f"{MODEL_NAME}:{sha256_of(new_pickle)[:16]}"
    third = store.import_model(pickle_path=new_pickle, card_path=new_card)

    assert (third.tag, third.created) == (new_tag, True)
    assert store.tags() == sorted([COMMITTED_TAG, new_tag])
    assert store.latest_tag() == new_tag


def test_the_store_holds_the_pickle_its_card_and_the_card_as_metadata(store: IsolatedStore) -> None:
    info = store.get(COMMITTED_TAG)
    card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    assert info["metadata"] == card
    assert info["labels"]["pickle_sha256"] == COMMITTED_SHA256
    version_dir = store.home / "models" / MODEL_NAME / COMMITTED_SHA256[:16]
    assert (version_dir / PICKLE_PATH.name).read_bytes() == PICKLE_PATH.read_bytes()
    assert (version_dir / CARD_PATH.name).read_bytes() == CARD_PATH.read_bytes()


def test_the_service_serves_the_committed_pickle_after_a_rollback(tmp_path: Path, new_model: tuple[Path, Path]) -> None:
    store = IsolatedStore(home=tmp_path / "bentoml_home")
    new_pickle, new_card = new_model
    store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)
    store.import_model(pickle_path=new_pickle, card_path=new_card)  # someone tried a new model...
    store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)  # ...and rolled back: `make import`

    served = store.run([sys.executable, "-c", "import service; print(service.MODEL_TAG)"]).stdout.strip()

    assert served == COMMITTED_TAG


def test_a_copy_of_the_pickle_elsewhere_is_the_same_version_already_imported(
    store: IsolatedStore, tmp_path: Path
) -> None:
    """The version depends on the bytes only, not on where the file is; the CLI says it has nothing to do."""
    shutil.copy(PICKLE_PATH, tmp_path / "copy.pkl")
    shutil.copy(CARD_PATH, tmp_path / "copy.json")
    before = store.snapshot()

    result = store.import_cli("--pickle", str(tmp_path / "copy.pkl"), "--card", str(tmp_path / "copy.json"))

    assert result.returncode == 0, result.stderr
    assert f"already in the store: {COMMITTED_TAG}" in result.stderr
    assert store.snapshot() == before


def test_the_same_pickle_with_another_card_replaces_the_stored_version(tmp_path: Path) -> None:
    """Retraining is deterministic: a card that gained fields (the drift reference) comes with the very same
    pickle. The store must then serve the new card (the model service's /metadata), not keep the old one."""
    store = IsolatedStore(home=tmp_path / "bentoml_home")
    old_card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    del old_card["drift_reference"]
    shutil.copy(PICKLE_PATH, tmp_path / "model.pkl")
    (tmp_path / "old_card.json").write_text(json.dumps(old_card), encoding="utf-8")
    store.import_model(pickle_path=tmp_path / "model.pkl", card_path=tmp_path / "old_card.json")

    outcome = store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)

    assert (outcome.tag, outcome.created) == (COMMITTED_TAG, True)
    assert store.tags() == [COMMITTED_TAG]
    version_dir = store.home / "models" / MODEL_NAME / COMMITTED_SHA256[:16]
    assert (version_dir / CARD_PATH.name).read_bytes() == CARD_PATH.read_bytes()
    committed = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    assert store.get(COMMITTED_TAG)["metadata"]["drift_reference"] == committed["drift_reference"]
