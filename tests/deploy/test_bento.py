"""The model service's image is the Bento: `bentoml build` it for real (in an isolated BentoML home)
and read what `bentoml containerize` would build from it, the Dockerfile BentoML generates, since
this machine has no Docker engine to run it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from models import CARD_PATH, MODEL_NAME, PICKLE_PATH
from tests.deploy.files import one, pod_spec
from tests.utils.servers import ROOT, VENV_BIN
from tests.utils.store import IsolatedStore

pytestmark = pytest.mark.slow


class BuiltBento:
    def __init__(self, path: Path, model_tag: str) -> None:
        self.path = path
        self.model_tag = model_tag
        self.info: dict[str, Any] = yaml.safe_load((path / "bento.yaml").read_text(encoding="utf-8"))
        self.dockerfile = (path / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> BuiltBento:
    store = IsolatedStore(home=tmp_path_factory.mktemp("bentoml_home"))
    imported = store.import_model(pickle_path=PICKLE_PATH, card_path=CARD_PATH)
    assert imported.tag, imported
    built = store.run([str(VENV_BIN / "bentoml"), "build", "-f", "bentofile.yaml", "-o", "tag"])
    found = re.search(r"__tag__:(\S+):(\S+)", built.stdout)
    assert found, built.stdout
    name, version = found.groups()
    return BuiltBento(store.home / "bentos" / name / version, model_tag=imported.tag)


def test_the_bento_carries_the_service_and_the_model_from_the_store(bento: BuiltBento) -> None:
    assert bento.info["service"] == "service:CreditCardSegmentation"
    (service,) = bento.info["services"]
    # `bentoml containerize` copies this model from the store into the image.
    assert [m["tag"] for m in service["models"]] == [bento.model_tag]
    assert bento.model_tag.startswith(f"{MODEL_NAME}:")
    sources = {str(p.relative_to(bento.path / "src")) for p in (bento.path / "src").rglob("*") if p.is_file()}
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    assert set(bentofile["include"]) <= sources
    assert PICKLE_PATH.name not in {Path(s).name for s in sources}, "the model travels through the store, not src/"


def test_the_bento_pins_python_and_the_packages(bento: BuiltBento) -> None:
    assert bento.info["image"]["python_version"] == "3.11"
    assert re.search(r"^FROM python:3\.11-slim\b", bento.dockerfile, re.MULTILINE)
    # The Bento installs the hashed lock: every pin with its hashes. BentoML appends its own pin
    # (`bentoml==<its version>`, no hash) whatever the file says; it must be the locked version.
    lock = _hashed_pins((ROOT / "requirements" / "lock" / "model-service.txt").read_text(encoding="utf-8"))
    installed = _hashed_pins((bento.path / "env" / "python" / "requirements.txt").read_text(encoding="utf-8"))
    assert lock and all(hashes for hashes in lock.values())
    assert {pin: hashes for pin, hashes in installed.items() if hashes} == lock
    assert {pin for pin, hashes in installed.items() if not hashes} <= {p for p in lock if p.startswith("bentoml==")}


def _hashed_pins(text: str) -> dict[str, frozenset[str]]:
    """`name==version` -> its hashes, from a requirements file (markers left out: tools spell them differently)."""
    pins: dict[str, frozenset[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        spec = re.sub(r"\s--hash=\S+", "", " " + line.split("#", 1)[0]).split(";", 1)[0].strip()
        if spec:
            hashes = frozenset(re.findall(r"--hash=(\S+)", line))
            pins[spec] = pins.get(spec, frozenset()) | hashes
    return pins


def test_the_kubernetes_pod_fits_the_bento_image_and_its_declared_resources(
    bento: BuiltBento, production: list[dict[str, Any]]
) -> None:
    pod = pod_spec(one(production, "Deployment", "model-service"))
    container = pod["containers"][0]
    # The image's user, by number: Kubernetes' runAsNonRoot cannot check the name `bentoml`.
    uid = re.search(r"^ARG BENTO_USER_UID=(\d+)$", bento.dockerfile, re.MULTILINE)
    gid = re.search(r"^ARG BENTO_USER_GID=(\d+)$", bento.dockerfile, re.MULTILINE)
    assert uid and gid and re.search(r"^USER bentoml$", bento.dockerfile, re.MULTILINE)
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid[1]), int(gid[1]))
    # The port BentoML serves on, and its worker count setting.
    assert re.search(r"^EXPOSE 3000$", bento.dockerfile, re.MULTILINE)
    assert [p["containerPort"] for p in container["ports"]] == [3000]
    assert {e["name"] for e in container["env"]} <= {e["name"] for e in bento.info["envs"]}
    # What service.py declares for one worker is what the pod requests.
    (service,) = bento.info["services"]
    assert service["config"]["resources"] == container["resources"]["requests"]
    assert (bento.path / "env" / "docker" / "entrypoint.sh").is_file()
