"""The images, checked without a Docker engine: what each Dockerfile copies exists and passes its
.dockerignore, what it runs (CMD, healthchecks, the migrations in Compose and Kubernetes) points at
modules and functions that exist, what the code imports is installed, and the final images run as
an unprivileged user with no build tools."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import dockerfile, imports
from tests.deploy.files import (
    API_DOCKERFILE,
    GATEWAY_DOCKERFILE,
    WORKER_DOCKERFILE,
    all_containers,
    of_kind,
    one,
    pod_spec,
    relative,
)
from tests.deploy.gateway import ENTRYPOINT as GATEWAY_ENTRYPOINT
from tests.deploy.gateway import GATEWAY_CONF
from tests.utils.servers import ROOT

Obj = dict[str, Any]

DOCKERFILES = (API_DOCKERFILE, WORKER_DOCKERFILE, GATEWAY_DOCKERFILE)
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|build-base|python3-dev)\b")


def _defines(module: str, name: str) -> bool:
    """Whether a project module exists and defines `name` at top level (read, not imported)."""
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, f"no module {module}"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name
        for node in tree.body
    )


def _runs_as_main(module: str) -> bool:
    """`python -m module` does something: the module has an `if __name__ == "__main__":` block."""
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, f"no module {module}"
    return 'if __name__ == "__main__":' in Path(spec.origin).read_text(encoding="utf-8")


def _python_module(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


# --------------------------------------------------------------------------- the evaluation API's image


def test_the_api_image_runs_the_app_factory_that_exists() -> None:
    final = dockerfile.parse(API_DOCKERFILE)[-1]
    cmd_instruction = final.last("CMD")
    assert cmd_instruction is not None
    cmd = cmd_instruction.exec_form()
    assert final.last("ENTRYPOINT") is None
    assert cmd[0] == "uvicorn" and "--factory" in cmd
    module, _, factory = cmd[1].partition(":")
    assert _defines(module, factory), f"{cmd[1]} does not exist"
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert final.last("EXPOSE") is not None and final.last("EXPOSE").args == port  # type: ignore[union-attr]


def test_the_api_image_is_slim_unprivileged_and_without_build_tools() -> None:
    stages = dockerfile.parse(API_DOCKERFILE)
    assert len(stages) == 2, "a build stage and a runtime stage"
    build, final = stages
    assert all(stage.base.startswith("python:3.11-slim") for stage in stages)
    # Wheels only, so the build needs no compiler either.
    (pip,) = [r.args for r in build.all("RUN") if "pip install" in r.args]
    assert "--only-binary=:all:" in pip and "--require-hashes -r /tmp/requirements/evaluation-api.txt" in pip
    assert not [r.args for r in final.all("RUN") if BUILD_TOOLS.search(r.args)]
    copies_from_build = [c for c in final.all("COPY") if c.flags_and_words()[0].get("from") == build.name]
    assert [c.flags_and_words()[1] for c in copies_from_build] == [["/opt/venv", "/opt/venv"]]
    user = final.last("USER")
    assert user is not None and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user.args), "a numeric, non-root user"


def test_the_api_image_healthcheck_asks_its_liveness_endpoint() -> None:
    final = dockerfile.parse(API_DOCKERFILE)[-1]
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = healthcheck.exec_form()
    assert command[:2] == ["python", "-c"]  # the slim image has no curl
    assert "'http://127.0.0.1:8000/healthz'" in command[2]


def _copied_files(path: Path) -> set[Path]:
    """The project files a Dockerfile's COPY instructions (not --from) put in the image."""
    files: set[Path] = set()
    for stage in dockerfile.parse(path):
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" not in flags:
                for source in words[:-1]:
                    source_path = ROOT / source
                    files |= (
                        {source_path} if source_path.is_file() else {p for p in source_path.rglob("*") if p.is_file()}
                    )
    return files


# What training needs and the API must not: the API's image installs none of it. Not here: numpy (the
# explanation's compiled search, decisioning/counterfactual.py, runs on numba, which needs it) and
# scipy, which numba imports to check its version where it is installed (here, not in the image).
TRAINING_ONLY = {"models", "sklearn", "pandas", "joblib", "bentoml"}


@pytest.fixture(scope="module")
def api_loaded(tmp_path_factory: pytest.TempPathFactory) -> imports.Loaded:
    """What importing each module of evaluation_api and decisioning (the migrations' scripts, run by
    Alembic, aside; decisioning.counterfactual is imported only by a process that explains) loads, in
    an interpreter that sees only what the API's image copies."""
    return imports.load(
        ["evaluation_api.*", "decisioning.*", "!evaluation_api.migrations"],
        files=_copied_files(API_DOCKERFILE),
        workdir=tmp_path_factory.mktemp("api-image"),
    )


def test_the_api_image_copies_and_installs_everything_the_api_imports(api_loaded: imports.Loaded) -> None:
    assert {"evaluation_api.main", "evaluation_api.migrate", "contract"} <= api_loaded.all
    assert {"fastapi", "sqlalchemy", "pydantic"} <= {m.split(".")[0] for m in api_loaded.direct}
    missing = imports.not_installed(api_loaded.direct, ROOT / "requirements" / "evaluation-api.txt")
    assert not missing, f"imported by the API but not installed by requirements/evaluation-api.txt: {missing}"


def test_the_api_imports_neither_the_training_package_nor_its_numeric_stack(api_loaded: imports.Loaded) -> None:
    assert not {m for m in api_loaded.all if m.split(".")[0] in TRAINING_ONLY}


def test_the_api_image_installs_none_of_the_training_stack() -> None:
    locked = (ROOT / "requirements" / "lock" / "evaluation-api.txt").read_text()
    pinned = {line.split("==")[0].strip().lower() for line in locked.splitlines() if "==" in line}
    assert {"numba", "numpy"} <= pinned
    assert not pinned & {"scipy", "scikit-learn", "pandas", "joblib", "bentoml", "pyarrow"}


# --------------------------------------------------------------------------- the portfolio worker's image


def test_the_worker_image_is_the_api_image_plus_the_engine_run_by_an_unprivileged_user() -> None:
    (stage,) = dockerfile.parse(WORKER_DOCKERFILE)
    assert stage.base.startswith("credit-eligibility/evaluation-api:")  # the API image's, as an ARG
    (pip,) = [r.args for r in stage.all("RUN") if "pip install" in r.args]
    assert "--only-binary=:all:" in pip and "--require-hashes -r /tmp/requirements/portfolio-worker.txt" in pip
    assert not [r.args for r in stage.all("RUN") if BUILD_TOOLS.search(r.args)]
    user = stage.last("USER")
    assert user is not None and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user.args)
    command = stage.last("CMD")
    assert command is not None and _runs_as_main(_python_module(command.exec_form()))
    assert command.exec_form() == ["python", "-m", "portfolio.worker"]


@pytest.fixture(scope="module")
def worker_loaded(tmp_path_factory: pytest.TempPathFactory) -> imports.Loaded:
    """What the worker and the engine load, in an interpreter that sees only what its image holds
    (the API image's files and its own)."""
    return imports.load(
        ["portfolio.worker", "portfolio.score", "portfolio.local_engine", "portfolio.segmenter"],
        files=_copied_files(API_DOCKERFILE) | _copied_files(WORKER_DOCKERFILE),
        workdir=tmp_path_factory.mktemp("worker-image"),
    )


def test_the_worker_image_copies_and_installs_everything_the_worker_imports(worker_loaded: imports.Loaded) -> None:
    assert {"portfolio.worker", "portfolio.model", "evaluation_api.portfolio_runs.store", "models.import_model"} <= (
        worker_loaded.all
    )
    missing = imports.not_installed(worker_loaded.direct, ROOT / "requirements" / "lock" / "portfolio-worker.txt")
    assert not missing, f"imported by the worker but not installed by requirements/portfolio-worker.txt: {missing}"
    # scikit-learn only on first need (portfolio/segmenter.py); bentoml and pandas never.
    assert not {m for m in worker_loaded.all if m.split(".")[0] in {"sklearn", "bentoml", "pandas"}}


# --------------------------------------------------------------------------- the model service's image (the Bento)


def test_the_bento_runs_a_service_class_that_exists() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    module, _, cls = bentofile["service"].partition(":")
    assert _defines(module, cls)
    assert bentofile["docker"]["python_version"] == "3.11"
    assert bentofile["python"]["requirements_txt"] == "requirements/lock/model-service.txt"


def test_the_bento_packs_and_installs_everything_the_model_service_imports(tmp_path: Path) -> None:
    """bentoml build packs service.py with the files it includes and installs only its requirements file.
    Importing service.py loads the model from the project's store (`make import`, run by `make test`)."""
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    included = [ROOT / p for p in bentofile["include"]]
    loaded = imports.load(["service"], files=included, workdir=tmp_path)
    assert {"service", "contract", "models"} <= loaded.all
    assert {"bentoml", "numpy", "joblib"} <= loaded.direct
    missing = imports.not_installed(loaded.direct, ROOT / bentofile["python"]["requirements_txt"])
    assert not missing, (
        f"imported by the model service but not installed by {bentofile['python']['requirements_txt']}: {missing}"
    )


# --------------------------------------------------------------------------- the gateway's image


def test_the_gateway_image_serves_the_form_with_the_tested_config_as_an_unprivileged_user(
    production: list[Obj],
) -> None:
    (stage,) = dockerfile.parse(GATEWAY_DOCKERFILE)
    assert stage.base.startswith("nginxinc/nginx-unprivileged:") and stage.base.endswith("-alpine")
    copies = {words[0].rstrip("/"): words[1] for words in (c.flags_and_words()[1] for c in stage.all("COPY"))}
    conf = GATEWAY_CONF.read_text(encoding="utf-8")
    assert copies[relative(GATEWAY_CONF)] == "/etc/nginx/conf.d/default.conf"
    root = re.search(r"^\s*root (\S+);", conf, re.MULTILINE)
    assert root and copies["frontend"].rstrip("/") == root.group(1)
    assert (ROOT / "frontend" / "index.html").is_file()
    user = stage.last("USER")
    assert user is not None and user.args == "101"
    assert pod_spec(one(production, "Deployment", "gateway"))["securityContext"]["runAsUser"] == 101
    listen = re.search(r"^\s*listen (\d+);", conf, re.MULTILINE)
    assert listen and stage.last("EXPOSE").args == listen.group(1)  # type: ignore[union-attr]
    healthcheck = stage.last("HEALTHCHECK")
    assert healthcheck is not None
    assert healthcheck.exec_form() == ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{listen.group(1)}/healthz"]
    # nginx, started by the entrypoint that can set the per-client limits (tests/deploy/test_gateway.py).
    entrypoint, command = stage.last("ENTRYPOINT"), stage.last("CMD")
    assert entrypoint is not None and command is not None
    assert entrypoint.exec_form() == [copies[relative(GATEWAY_ENTRYPOINT)]]
    assert command.exec_form() == ["nginx", "-g", "daemon off;"]


# --------------------------------------------------------------------------- both, and what runs them


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_what_each_dockerfile_copies_exists_and_passes_its_dockerignore(path: Path) -> None:
    ignore = dockerfile.DockerIgnore.read(path.with_name(path.name + ".dockerignore"))
    for stage in dockerfile.parse(path):
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                continue
            for source in words[:-1]:
                source_path = ROOT / source
                assert source_path.exists(), f"{path.name} copies {source}, which does not exist"
                files = [source_path] if source_path.is_file() else [p for p in source_path.rglob("*") if p.is_file()]
                kept = [f for f in files if not ignore.excludes(str(f.relative_to(ROOT)))]
                assert kept, f"{path.name}.dockerignore leaves {source} out of the build context"
                if source_path.is_file() or source == "frontend/":
                    assert kept == files


def test_the_dockerignore_keeps_the_context_small() -> None:
    ignore = dockerfile.DockerIgnore.read(API_DOCKERFILE.with_name(API_DOCKERFILE.name + ".dockerignore"))
    for heavy in (".venv/bin/python", ".bentoml/models/x", ".git/config", "tests/conftest.py", "frontend/index.html"):
        assert ignore.excludes(heavy), heavy
    assert ignore.excludes("evaluation_api/__pycache__/main.cpython-311.pyc")
    assert not ignore.excludes("evaluation_api/main.py")


def test_every_migration_command_points_at_the_migrate_module(production: list[Obj], compose: Obj) -> None:
    commands = [compose["services"]["migrate"]["command"]]
    for deployment in of_kind(production, "Deployment"):
        commands += [
            c["command"]
            for c in all_containers(deployment)
            if "command" in c and c["command"][0] == "python" and c["command"] != ["python", "-m", "portfolio.worker"]
        ]
    assert len(commands) == 2
    for command in commands:
        module = _python_module(command)
        assert module == "evaluation_api.migrate"
        assert _runs_as_main(module) and _defines(module, "main")


def test_the_api_pods_run_the_images_user_and_port(production: list[Obj]) -> None:
    final = dockerfile.parse(API_DOCKERFILE)[-1]
    user, expose = final.last("USER"), final.last("EXPOSE")
    assert user is not None and expose is not None
    uid, gid = (int(x) for x in user.args.split(":"))
    pod = pod_spec(one(production, "Deployment", "evaluation-api"))
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert [p["containerPort"] for p in pod["containers"][0]["ports"]] == [int(expose.args)]
