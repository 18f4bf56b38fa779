"""`bentoml build`: the Bento (the model service's deployable artifact) holds what it must and nothing else.

Built into an isolated BentoML home, after importing the committed model there the way `make import`
does; then served from that home (BentoML's fourth testing layer) to prove the Bento runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from models import MODEL_NAME
from tests.utils.data import customer
from tests.utils.servers import VENV_BIN, Server, free_port
from tests.utils.store import IsolatedStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[IsolatedStore, str, Path]:
    """(store, bento tag, bento directory)."""
    store = IsolatedStore(home=tmp_path_factory.mktemp("bentoml_home"))
    assert store.import_cli().returncode == 0
    result = store.run([str(VENV_BIN / "bentoml"), "build", "-f", "bentofile.yaml", "-o", "tag"], timeout=300)
    match = re.search(r"__tag__:(\S+:\S+)", result.stdout)
    assert match, result.stdout + result.stderr
    tag = match.group(1)
    name, version = tag.split(":")
    return store, tag, store.home / "bentos" / name / version


def test_bento_yaml_names_the_service_and_the_model(built: tuple[IsolatedStore, str, Path], committed_tag: str) -> None:
    _, tag, bento = built
    manifest = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))

    assert tag.startswith(f"{MODEL_NAME}:")
    assert manifest["service"] == "service:CreditCardSegmentation"
    assert manifest["name"] == MODEL_NAME
    models = [m["tag"] for s in manifest["services"] for m in s["models"]] + [m["tag"] for m in manifest["models"]]
    assert models == [committed_tag]
    assert re.fullmatch(rf"{MODEL_NAME}:[0-9a-f]{{16}}", models[0])
    routes = {r["route"] for r in manifest["schema"]["routes"]}
    assert {"/predict", "/predict_bulk"} <= routes


def test_the_source_is_the_service_and_the_models_package(built: tuple[IsolatedStore, str, Path]) -> None:
    _, _, bento = built
    src = bento / "src"
    assert (src / "service.py").is_file()
    for module in ("__init__.py", "segments.py", "train.py", "import_model.py"):
        assert (src / "models" / module).is_file(), module
    assert (src / "models" / "model_card.json").is_file()


def test_nothing_local_is_packed(built: tuple[IsolatedStore, str, Path]) -> None:
    _, _, bento = built
    files = [p.relative_to(bento) for p in bento.rglob("*")]
    assert files
    for path in files:
        assert not {".bentoml", "var", ".venv", ".git", "tests", "__pycache__"} & set(path.parts), path
        assert path.suffix != ".csv", path
        assert path.name != ".env", path


def test_requirements_pin_bentoml_and_scikit_learn(built: tuple[IsolatedStore, str, Path]) -> None:
    _, _, bento = built
    requirements = (bento / "env" / "python" / "requirements.txt").read_text(encoding="utf-8")
    # A hashed lock: `name==version \` with its --hash lines after it.
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", requirements, flags=re.MULTILINE))
    assert "bentoml" in pins and "scikit-learn" in pins
    from importlib import metadata

    assert pins["bentoml"] == metadata.version("bentoml")
    assert pins["scikit-learn"] == metadata.version("scikit-learn")


def test_a_dockerfile_is_generated(built: tuple[IsolatedStore, str, Path]) -> None:
    _, _, bento = built
    assert (bento / "env" / "docker" / "Dockerfile").is_file()


@pytest.fixture(scope="module")
def served_bento(built: tuple[IsolatedStore, str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store, tag, _ = built
    port = free_port()
    server = Server(
        name="built Bento",
        args=[str(VENV_BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        port=port,
        ready_path="/readyz",
        env=store.env(),
        log_path=tmp_path_factory.mktemp("logs") / "bento.log",
    )
    server.start(timeout=120)
    yield server
    server.stop()


def test_the_built_bento_serves_the_committed_model(served_bento: Server, committed_tag: str) -> None:
    with httpx.Client(base_url=served_bento.url, timeout=30) as client:
        prediction = client.post("/predict", json={"customers": [customer()]})
        metadata = client.get("/metadata")

    assert prediction.status_code == 200
    assert prediction.json()[0]["segment"] == "low_limit_light_users"
    assert metadata.json()["model"]["tag"] == committed_tag
