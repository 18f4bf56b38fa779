"""Where the deployment files are, and small accessors for the objects rendered from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.utils.servers import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PRODUCTION = K8S / "overlays" / "production"
COMPOSE_FILE = DEPLOY / "compose.yaml"
API_DOCKERFILE = DEPLOY / "evaluation-api.Dockerfile"
GATEWAY_DOCKERFILE = DEPLOY / "gateway.Dockerfile"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"

Obj = dict[str, Any]


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
