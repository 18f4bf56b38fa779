"""The model service trusts the model card that travels with its code (models/model_card.json, packed
into the Bento by bentofile.yaml), never the store's own copy: the store is a directory anyone with
access can edit, pickle and card alike. It refuses to start, before unpickling anything, when the
pickle's sha256 or the tag's version is not the trusted card's.

Each case runs the service class in a subprocess on an isolated BentoML store (tests/utils/store.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models import CARD_PATH, MODEL_NAME, PICKLE_PATH
from tests.utils.artifacts import code_running_pickle
from tests.utils.servers import ROOT
from tests.utils.store import IsolatedStore

START = "import service; service.CreditCardSegmentation(); print('started', service.MODEL_TAG)"
COMMITTED_SHA256 = json.loads(CARD_PATH.read_text(encoding="utf-8"))["pickle_sha256"]
COMMITTED_VERSION = COMMITTED_SHA256[:16]


@pytest.fixture
def store(tmp_path: Path) -> IsolatedStore:
    store = IsolatedStore(home=tmp_path / "bentoml_home")
    imported = store.import_cli()
    assert imported.returncode == 0, imported.stderr
    return store


def start(store: IsolatedStore, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", START],
        cwd=ROOT,
        env=store.env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def version_dir(store: IsolatedStore, version: str = COMMITTED_VERSION) -> Path:
    return store.home / "models" / MODEL_NAME / version


def test_the_committed_model_starts(store: IsolatedStore) -> None:
    result = start(store)
    assert result.returncode == 0, result.stderr
    assert f"started {MODEL_NAME}:{COMMITTED_VERSION}" in result.stdout


def test_a_tampered_pickle_with_a_matching_tampered_store_card_is_refused(store: IsolatedStore, tmp_path: Path) -> None:
    """An attacker who can write the store replaces the pickle and rewrites the store's card to match it."""
    marker = tmp_path / "was-unpickled"
    malicious = code_running_pickle(marker)
    stored = version_dir(store)
    (stored / PICKLE_PATH.name).write_bytes(malicious)
    card = json.loads((stored / CARD_PATH.name).read_text(encoding="utf-8"))
    card["pickle_sha256"] = hashlib.sha256(malicious).hexdigest()
    (stored / CARD_PATH.name).write_text(json.dumps(card), encoding="utf-8")

    result = start(store)

    assert result.returncode != 0
    assert "ModelIntegrityError" in result.stderr
    assert f"does not match the sha256 in the model card {CARD_PATH}" in result.stderr
    assert COMMITTED_SHA256 in result.stderr
    assert not marker.exists(), "the tampered pickle was unpickled"


def test_a_tag_whose_version_is_not_the_cards_is_refused(store: IsolatedStore, tmp_path: Path) -> None:
    """The committed pickle under another version: bytes and card agree, the tag does not."""
    other = "00000000deadbeef"
    shutil.copytree(version_dir(store), version_dir(store, other))
    model_yaml = version_dir(store, other) / "model.yaml"
    model_yaml.write_text(model_yaml.read_text(encoding="utf-8").replace(COMMITTED_VERSION, other), encoding="utf-8")

    result = start(store, MODEL_TAG=f"{MODEL_NAME}:{other}")

    assert result.returncode != 0
    assert "ModelIntegrityError" in result.stderr
    assert f"the model tag's version {other} is not the one the model card" in result.stderr


def test_a_card_outside_the_store_can_be_named_and_a_missing_one_is_a_clear_error(
    store: IsolatedStore, tmp_path: Path
) -> None:
    card = tmp_path / "card-from-training.json"
    shutil.copy(CARD_PATH, card)
    named = start(store, MODEL_CARD_PATH=str(card))
    assert named.returncode == 0, named.stderr

    missing = start(store, MODEL_CARD_PATH=str(tmp_path / "absent.json"))
    assert missing.returncode != 0
    assert f"cannot read the model card {tmp_path / 'absent.json'}" in missing.stderr
