"""docs/DEPLOY.md names only what exists: files, make targets, the namespace, Deployments, images."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.files import DEPLOY_DOC, of_kind
from tests.utils.servers import ROOT

DOC = DEPLOY_DOC.read_text(encoding="utf-8")


def test_every_file_the_guide_names_exists() -> None:
    paths = set(re.findall(r"(?<![\w/])((?:deploy|docs|requirements|frontend|evaluation_api|models)/[\w./-]*\w)", DOC))
    assert "deploy/compose.yaml" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists() and p != "deploy/.env")
    assert not missing


def test_every_make_target_the_guide_uses_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.MULTILINE))
    used = set(re.findall(r"(?:^|`)make ([a-z-]+)", DOC, re.MULTILINE))  # in commands, not prose
    assert used and used <= targets


def test_the_kubectl_commands_name_the_production_namespace_and_deployments(production: list[dict[str, Any]]) -> None:
    (namespace,) = of_kind(production, "Namespace")
    assert set(re.findall(r"kubectl -n ([\w-]+)", DOC)) == {namespace["metadata"]["name"]}
    deployments = {d["metadata"]["name"] for d in of_kind(production, "Deployment")}
    named = set(re.findall(r"deployment/([\w-]+)", DOC))
    assert named == deployments


def test_the_image_names_are_the_ones_the_manifests_use(production: list[dict[str, Any]]) -> None:
    images = {
        c["image"].rsplit(":", 1)[0]
        for d in of_kind(production, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    for image in images:
        assert image in DOC, image
