"""deploy/k8s's NetworkPolicies, reasoned over as the cluster enforces them: every real path of the
system is allowed, in both directions, and everything else is denied.

`allowed(src, dst, port)` follows the NetworkPolicy API: a pod selected by no policy of a direction
is open in that direction; a pod selected by one or more is isolated, and a connection passes only
if the source's egress rules AND the destination's ingress rules each admit it. Peers outside the
namespace (the ingress controller, kube-dns, the database, the internet) are not subject to our
policies; only the rules that name them matter. ipBlock rules match addresses outside the cluster
(how a CNI treats pod IPs in an ipBlock varies, so no real path relies on it)."""

from __future__ import annotations

import ipaddress
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.files import PRODUCTION, kustomize, of_kind, one, pod_spec

Obj = dict[str, Any]
NAMESPACE = "credit-eligibility"


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (namespace + labels, with its container ports) or an address."""

    name: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ip: str | None = None
    ports: tuple[tuple[str, int], ...] = field(default=())

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def pod(name: str, namespace: str, labels: dict[str, str], ports: dict[str, int] | None = None) -> Peer:
    return Peer(name, namespace, tuple(sorted(labels.items())), None, tuple(sorted((ports or {}).items())))


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels AND every matchExpression; the empty selector selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def namespace_labels(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}  # set by the API server on every namespace


def peer_matches(rule_peer: Obj, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], namespace_labels(peer.namespace)):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return selects(rule_peer.get("podSelector", {}), peer.label_map)


def port_matches(rule_ports: list[Obj] | None, dst: Peer, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = dict(dst.ports).get(wanted)
        if wanted is not None and wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def admits(policies: list[Obj], me: Peer, other: Peer, dst: Peer, port: int, protocol: str, direction: str) -> bool:
    """Whether `me`'s policies of `direction` ('Ingress' or 'Egress') let the connection through."""
    if me.namespace != NAMESPACE:
        return True  # not ours to police
    mine = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == me.namespace
        and selects(p["spec"]["podSelector"], me.label_map)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not mine:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in mine:
        namespace = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(peer_matches(p, other, namespace) for p in peers)
            if peer_ok and port_matches(rule.get("ports"), dst, port, protocol):
                return True
    return False


def allowed(policies: list[Obj], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    return admits(policies, src, dst, dst, port, protocol, "Egress") and admits(
        policies, dst, src, dst, port, protocol, "Ingress"
    )


# --------------------------------------------------------------------------- the system's peers

INGRESS_CONTROLLER = pod("ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
DNS = pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
# The address deploy/k8s/overlays/production/database-network.yaml names for PostgreSQL.
DATABASE = Peer("postgresql", ip="10.20.0.10")
OTHER_ADDRESSES = [Peer("internet", ip="93.184.216.34"), Peer("another-private-host", ip="10.99.0.7")]
OTHER_PODS = [
    pod("a-pod-in-another-namespace", "default", {"app.kubernetes.io/name": "evaluation-api"}),
    pod("a-new-pod-here", NAMESPACE, {"app.kubernetes.io/name": "debug-shell"}),
]


def workloads(production: list[Obj]) -> dict[str, Peer]:
    peers = {}
    for deployment in of_kind(production, "Deployment"):
        ports = {p["name"]: p["containerPort"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
        peers[deployment["metadata"]["name"]] = pod(
            deployment["metadata"]["name"],
            deployment["metadata"]["namespace"],
            deployment["spec"]["template"]["metadata"]["labels"],
            ports,
        )
    return peers


def container_port(production: list[Obj], name: str) -> int:
    port: int = pod_spec(one(production, "Deployment", name))["containers"][0]["ports"][0]["containerPort"]
    return port


def real_paths(production: list[Obj]) -> set[tuple[str, str, int, str]]:
    """(source, destination, port, protocol) of every connection the system makes, from its manifests."""
    gateway, api, model = (container_port(production, n) for n in ("gateway", "evaluation-api", "model-service"))
    return {
        ("ingress-controller", "gateway", gateway, "TCP"),
        ("gateway", "evaluation-api", api, "TCP"),
        ("evaluation-api", "model-service", model, "TCP"),
        ("evaluation-api", "postgresql", 5432, "TCP"),
        ("portfolio-worker", "postgresql", 5432, "TCP"),
        *{
            (name, "kube-dns", 53, proto)
            for name in ("gateway", "evaluation-api", "portfolio-worker")
            for proto in ("UDP", "TCP")
        },
    }


@pytest.fixture(scope="module")
def system(production: list[Obj]) -> tuple[list[Obj], dict[str, Peer]]:
    peers = {
        **workloads(production),
        **{p.name: p for p in (INGRESS_CONTROLLER, DNS, DATABASE, *OTHER_ADDRESSES, *OTHER_PODS)},
    }
    return of_kind(production, "NetworkPolicy"), peers


def test_every_real_path_is_allowed(production: list[Obj], system: tuple[list[Obj], dict[str, Peer]]) -> None:
    policies, peers = system
    for src, dst, port, protocol in sorted(real_paths(production)):
        assert allowed(policies, peers[src], peers[dst], port, protocol), f"{src} -> {dst}:{port}/{protocol} is denied"


def test_everything_else_is_denied_in_both_directions(
    production: list[Obj], system: tuple[list[Obj], dict[str, Peer]]
) -> None:
    policies, peers = system
    paths = real_paths(production)
    ports = {port for _, _, port, _ in paths} | {80, 443, 8080, 9090}
    ours = {name for name, peer in peers.items() if peer.namespace == NAMESPACE}
    let_through = []
    for src, dst in itertools.permutations(peers, 2):
        if src not in ours and dst not in ours:
            continue  # between two peers outside the namespace: not ours to police
        for port, protocol in itertools.product(sorted(ports), ("TCP", "UDP")):
            if (src, dst, port, protocol) in paths:
                continue
            if allowed(policies, peers[src], peers[dst], port, protocol):
                let_through.append(f"{src} -> {dst}:{port}/{protocol}")
    assert let_through == []


def test_a_default_deny_covers_every_pod_of_the_namespace_both_ways(production: list[Obj]) -> None:
    policy = one(production, "NetworkPolicy", "default-deny")
    assert policy["spec"]["podSelector"] == {}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress") and not policy["spec"].get("egress")


def test_the_database_is_reached_only_at_a_narrow_address_in_production(production: list[Obj]) -> None:
    policy = one(production, "NetworkPolicy", "evaluation-api-database")
    blocks = [peer["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for peer in rule["to"]]
    assert blocks and all(ipaddress.ip_network(b).prefixlen >= 24 for b in blocks), blocks
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {5432}


def test_the_model_is_useless_without_the_policies(system: tuple[list[Obj], dict[str, Peer]]) -> None:
    """The reasoning itself can fail: with no policies every connection would pass."""
    _, peers = system
    assert allowed([], peers["internet"], peers["model-service"], 3000)
    assert allowed([], peers["model-service"], peers["internet"], 443)


def test_a_candidate_model_is_reached_by_the_api_only_and_the_live_service_never_selects_it() -> None:
    """deploy/k8s/overlays/candidate: production plus a candidate model service (change control)."""
    candidate = kustomize(PRODUCTION.parent / "candidate")
    peers = {
        **workloads(candidate),
        **{p.name: p for p in (INGRESS_CONTROLLER, DNS, DATABASE, *OTHER_ADDRESSES, *OTHER_PODS)},
    }
    policies = of_kind(candidate, "NetworkPolicy")
    port = container_port(candidate, "model-service-candidate")
    paths = real_paths(candidate) | {("evaluation-api", "model-service-candidate", port, "TCP")}
    for src, dst, to_port, protocol in sorted(paths):
        assert allowed(policies, peers[src], peers[dst], to_port, protocol), f"{src} -> {dst}:{to_port} is denied"
    for src in peers:
        for to_port in sorted({port, 80, 443, 8080}):
            if (src, "model-service-candidate", to_port, "TCP") not in paths and src != "model-service-candidate":
                assert not allowed(policies, peers[src], peers["model-service-candidate"], to_port), src
        if src != "model-service-candidate":
            assert not allowed(policies, peers["model-service-candidate"], peers[src], 443), src  # it calls nothing
    live = one(candidate, "Service", "model-service")["spec"]["selector"]
    assert not selects({"matchLabels": live}, peers["model-service-candidate"].label_map)
    settings = one(candidate, "ConfigMap", "evaluation-api-settings")["data"]
    own = one(candidate, "Service", "model-service-candidate")["spec"]["ports"][0]["port"]
    assert json.loads(settings["CANDIDATE_MODEL_SERVICE_URLS"]) == [f"http://model-service-candidate:{own}"]
