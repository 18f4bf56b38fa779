"""Render a kustomization in deploy/k8s/ into plain Kubernetes objects, offline.

`kubectl kustomize` is the real renderer and is used wherever kubectl is installed (it is on this
project's machines: Debian's image ships Google's kubectl package). Where it is not, `render_subset`
renders the same files in Python: it knows only the kustomization fields deploy/k8s uses and
refuses any other, so that a new field cannot be silently ignored. test_k8s.py checks that both
renderers give the same objects whenever kubectl is there.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}

# Cluster-scoped kinds among those deploy/k8s uses: the namespace transformer leaves them alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass", "StorageClass", "PersistentVolume"}

# Workloads whose pod template gets the labels when `includeTemplates: true`.
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
}

SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet"}

# Strategic merge: lists of objects under these fields are merged item by item on this key (the
# patchMergeKey of the Kubernetes API); any other list is replaced whole, as kustomize does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render(directory: Path) -> list[Obj]:
    """The objects of a kustomization: kubectl's rendering when it is installed, else render_subset."""
    if kubectl():
        return render_with_kubectl(directory)
    return render_subset(directory)


def render_with_kubectl(directory: Path) -> list[Obj]:
    exe = kubectl()
    assert exe, "kubectl is not installed"
    done = subprocess.run([exe, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_subset(directory: Path) -> list[Obj]:
    """kustomize's semantics for the fields deploy/k8s uses (see SUPPORTED_FIELDS)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise NotImplementedError(
            f"{directory}/kustomization.yaml uses {sorted(unknown)}, which tests/deploy/kustomize.py does not "
            "render: teach render_subset, or run the tests where kubectl is installed"
        )
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render_subset(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)

    # kustomize's order of built-in transformers: patches, namespace, labels, replicas, images.
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, directory, patch)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for labels in kustomization.get("labels", []):
        _apply_labels(objects, labels)
    for replicas in kustomization.get("replicas", []):
        matches = [o for o in objects if o["metadata"]["name"] == replicas["name"] and o["kind"] in SCALABLE]
        if not matches:
            raise ValueError(f"replicas: no workload named {replicas['name']}")
        for obj in matches:
            obj["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        _apply_image(objects, image)
    return objects


def _apply_patch(objects: list[Obj], directory: Path, patch: Obj) -> None:
    if set(patch) != {"path"}:
        raise NotImplementedError(f"patches: only `path:` to a strategic-merge patch is rendered here, not {patch}")
    body = yaml.safe_load((directory / patch["path"]).read_text(encoding="utf-8"))
    targets = [o for o in objects if o["kind"] == body["kind"] and o["metadata"]["name"] == body["metadata"]["name"]]
    if len(targets) != 1:
        raise ValueError(f"patch {patch['path']} matches {len(targets)} objects, not one")
    merged = _merge(targets[0], body)
    targets[0].clear()
    targets[0].update(merged)


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if "$patch" in patch:
            raise NotImplementedError("$patch directives are not rendered here")
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out = copy.deepcopy(base)
        for item in patch:
            existing = next((i for i, b in enumerate(out) if b.get(key) == item.get(key)), None)
            if existing is None:
                out.append(copy.deepcopy(item))
            else:
                out[existing] = _merge(out[existing], item)
        return out
    return copy.deepcopy(patch)


def _apply_labels(objects: list[Obj], labels: Obj) -> None:
    if set(labels) - {"pairs", "includeSelectors", "includeTemplates"} or labels.get("includeSelectors"):
        raise NotImplementedError(f"labels: only pairs with includeSelectors false are rendered here, not {labels}")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
        path = POD_TEMPLATE_PATHS.get(obj["kind"])
        if labels.get("includeTemplates") and path:
            template = obj
            for part in path:
                template = template[part]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(labels["pairs"])


def _apply_image(objects: list[Obj], image: Obj) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise NotImplementedError(f"images: only name, newName and newTag are rendered here, not {image}")
    for obj in objects:
        path = POD_TEMPLATE_PATHS.get(obj["kind"])
        if not path:
            continue
        pod = obj
        for part in path:
            pod = pod[part]
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                new_tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")


def _split_image(ref: str) -> tuple[str, str | None]:
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, None
