"""The gateway's nginx config (deploy/nginx/gateway.conf): accepted by `nginx -t`, then run with
Debian's nginx on a free port in front of the real evaluation API, so that the form, an evaluation,
the security headers, gzip, the body-size limit and the rate limit are seen from a client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.deploy.files import one
from tests.deploy.gateway import GatewayDir
from tests.utils import servers
from tests.utils.evaluations import body as valid_evaluation
from tests.utils.identity import bearer

SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=()",
    "cross-origin-opener-policy": "same-origin",
}


def _real_ip_conf(production: list[dict[str, Any]]) -> str:
    conf: str = one(production, "ConfigMap", "gateway-real-ip")["data"]["real-ip.conf"]
    return conf


@pytest.mark.parametrize("behind_ingress", [False, True], ids=["compose", "kubernetes"])
def test_nginx_accepts_the_gateway_config(production: list[dict[str, Any]], behind_ingress: bool) -> None:
    """As Compose runs it, and as Kubernetes does with real-ip.conf beside it (a ConfigMap)."""
    extra = {"real-ip.conf": _real_ip_conf(production)} if behind_ingress else {}
    gateway = GatewayDir(port=servers.free_port(), api_address=f"127.0.0.1:{servers.free_port()}", extra_confs=extra)
    try:
        done = gateway.check()
        assert done.returncode == 0, done.stderr
        assert "test is successful" in done.stderr
        assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr
    finally:
        gateway.remove()


def _run_gateway(api_address: str, **limits: str) -> Iterator[str]:
    """nginx on the committed config; with `limits`, started by the image's entrypoint with them."""
    gateway = GatewayDir(port=servers.free_port(), api_address=api_address)
    server = gateway.entrypoint_server(**limits) if limits else gateway.server()
    try:
        try:
            server.start(timeout=20)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nnginx error.log:\n{gateway.error_log()}") from exc
        yield server.url
    finally:
        server.stop()
        gateway.remove()


@pytest.fixture
def gateway(evaluation_api_server: servers.Server) -> Iterator[str]:
    """A gateway in front of the real evaluation API (and model service); fresh per test, so that one
    test's requests never count against another's rate limit."""
    yield from _run_gateway(f"127.0.0.1:{evaluation_api_server.port}")


@pytest.fixture
def gateway_without_api() -> Iterator[str]:
    """A gateway whose evaluation API is down: nothing listens on its upstream port."""
    yield from _run_gateway(f"127.0.0.1:{servers.free_port()}")


def _assert_security_headers(response: httpx.Response) -> None:
    for name, expected in SECURITY_HEADERS.items():
        assert expected in response.headers.get(name, ""), (
            f"{name} on {response.request.url}: {response.headers.get(name)}"
        )
    assert response.headers["server"] == "nginx", "no version"


@pytest.mark.slow
def test_the_form_is_served_compressed_with_security_headers(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=5) as client:
        page = client.get("/", headers={"Accept-Encoding": "gzip"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-encoding"] == "gzip"
        assert 'data-testid="evaluation-form"' in page.text
        _assert_security_headers(page)
        script = client.get("/app.js", headers={"Accept-Encoding": "gzip"})
        assert script.status_code == 200 and script.headers["content-encoding"] == "gzip"
        assert "javascript" in script.headers["content-type"]
        # Static files are read-only.
        assert client.post("/", content=b"x").status_code == 403


@pytest.mark.slow
def test_an_evaluation_submitted_through_the_gateway_is_answered_and_recorded(
    gateway: str, evaluation_api_key: str
) -> None:
    with httpx.Client(base_url=gateway, timeout=10, headers=bearer(evaluation_api_key)) as client:
        response = client.post("/api/v1/evaluations", json=valid_evaluation())
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["decision"] in {"approved", "review", "denied"}
        assert response.headers["content-type"].startswith("application/json")
        _assert_security_headers(response)
        # One request id from the gateway to the decision record, and only one header.
        assert response.headers.get_list("x-request-id") == [body["request_id"]]

        # nginx compresses 200s (not 201s): the record, read back through the gateway.
        record = client.get(f"/api/v1/evaluations/{body['id']}", headers={"Accept-Encoding": "gzip"})
        assert record.status_code == 200 and record.json()["id"] == body["id"]
        assert record.headers["content-encoding"] == "gzip"

        legacy = client.post("/avaliar", json=valid_evaluation())
        assert legacy.status_code == 200, legacy.text
        assert legacy.json()["nome"] == valid_evaluation()["name"]


@pytest.mark.slow
def test_credentials_pass_through_and_their_absence_is_the_apis_401(gateway: str) -> None:
    response = httpx.post(gateway + "/api/v1/evaluations", json=valid_evaluation(), timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    forged = httpx.post(
        gateway + "/api/v1/evaluations", json=valid_evaluation(), headers=bearer("cek_not-a-key"), timeout=10
    )
    assert forged.status_code == 401
    _assert_security_headers(forged)


@pytest.mark.slow
def test_signing_in_is_rate_limited_harder_than_the_api(gateway: str) -> None:
    """10 sign-ins a minute per client with a burst of 5: back-to-back, at most 6 reach the API."""
    statuses = []
    for n in range(30):
        response = httpx.post(
            gateway + "/api/v1/auth/token", data={"username": f"ninguem-{n}", "password": "x" * 12}, timeout=10
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401} and len(statuses) - 1 <= 7, statuses
    assert response.json()["error"] == "rate_limited"
    assert response.headers["retry-after"] == "1"


@pytest.mark.slow
def test_the_api_validation_errors_pass_through_unchanged(gateway: str, evaluation_api_key: str) -> None:
    response = httpx.post(
        gateway + "/api/v1/evaluations",
        json=valid_evaluation(credit_limit=0),
        headers=bearer(evaluation_api_key),
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "credit_limit"


@pytest.mark.slow
def test_a_body_over_16_kib_is_refused_with_413_in_the_api_error_shape(gateway: str) -> None:
    oversized = json.dumps(valid_evaluation(name="x" * (17 * 1024))).encode()
    response = httpx.post(
        gateway + "/api/v1/evaluations", content=oversized, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    _assert_security_headers(response)


@pytest.mark.slow
def test_a_burst_from_one_client_is_limited_with_429_and_retry_after(gateway: str) -> None:
    """10 requests/s per client with a burst of 20: back-to-back requests pass 21 and then get 429,
    whatever the machine's speed (200 requests take far less than the 18 s it would take to refill)."""
    unknown = f"/api/v1/evaluations/{uuid.uuid4()}"
    with httpx.Client(base_url=gateway, timeout=5) as client:
        statuses = []
        for _ in range(200):
            response = client.get(unknown)
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, "no 429 after 200 back-to-back requests"
        assert set(statuses[:-1]) == {401} and len(statuses) - 1 >= 21, statuses  # no credential: the API's 401
        assert response.json()["error"] == "rate_limited"
        assert response.headers["retry-after"] == "1"
        _assert_security_headers(response)
        # The form is not rate limited.
        assert client.get("/").status_code == 200


# --- The per-client limits, set when the image starts (deploy/nginx/gateway-entrypoint.sh) ----------

LIMITS = {"GATEWAY_RATE_LIMIT_RPS": "1000", "GATEWAY_RATE_LIMIT_BURST": "500", "GATEWAY_CONN_LIMIT": "128"}


@pytest.fixture
def gateway_dir() -> Iterator[GatewayDir]:
    gateway = GatewayDir(port=servers.free_port(), api_address=f"127.0.0.1:{servers.free_port()}")
    yield gateway
    gateway.remove()


def test_without_limits_set_the_entrypoint_runs_the_config_as_built(gateway_dir: GatewayDir) -> None:
    done = gateway_dir.run_entrypoint("-T", GATEWAY_RATE_LIMIT_RPS="", GATEWAY_RATE_LIMIT_BURST="")
    assert done.returncode == 0, done.stderr
    # nginx -T prints every file it loaded: the prefix's (the committed gateway.conf), byte for byte.
    built = (gateway_dir.prefix / "conf.d" / "default.conf").read_text(encoding="utf-8")
    assert f"# configuration file {gateway_dir.prefix}/conf.d/default.conf:\n{built}" in done.stdout
    assert not gateway_dir.run_dir.exists()


def test_the_entrypoint_writes_the_limits_it_is_given_and_nothing_else(gateway_dir: GatewayDir) -> None:
    done = gateway_dir.run_entrypoint("-T", **LIMITS)
    assert done.returncode == 0, done.stderr
    assert f"# configuration file {gateway_dir.run_dir}/conf.d/default.conf:" in done.stdout
    assert "zone=api_per_client:10m rate=1000r/s;" in done.stdout
    assert done.stdout.count("limit_req zone=api_per_client burst=500 nodelay;") == 2  # the API, the uploads
    assert "limit_conn conn_per_client 128;" in done.stdout
    # Signing in keeps its own zone.
    assert "zone=signin_per_client:10m rate=10r/m;" in done.stdout
    assert "limit_req zone=signin_per_client burst=5 nodelay;" in done.stdout
    # The copy differs from the prefix's config in those lines only.
    built = (gateway_dir.prefix / "conf.d" / "default.conf").read_text(encoding="utf-8").splitlines()
    copy = (gateway_dir.run_dir / "conf.d" / "default.conf").read_text(encoding="utf-8").splitlines()
    changed = [(a.strip(), b.strip()) for a, b in zip(built, copy, strict=True) if a != b]
    assert changed == [
        ("limit_req_zone $binary_remote_addr zone=api_per_client:10m rate=10r/s;",
         "limit_req_zone $binary_remote_addr zone=api_per_client:10m rate=1000r/s;"),
        ("limit_conn conn_per_client 32;", "limit_conn conn_per_client 128;"),
        ("limit_req zone=api_per_client burst=20 nodelay;", "limit_req zone=api_per_client burst=500 nodelay;"),
        ("limit_req zone=api_per_client burst=20 nodelay;", "limit_req zone=api_per_client burst=500 nodelay;"),
    ]  # fmt: skip


def test_one_limit_set_leaves_the_others_at_their_default(gateway_dir: GatewayDir) -> None:
    done = gateway_dir.run_entrypoint("-T", GATEWAY_RATE_LIMIT_BURST="5")
    assert done.returncode == 0, done.stderr
    assert "zone=api_per_client:10m rate=10r/s;" in done.stdout
    assert done.stdout.count("limit_req zone=api_per_client burst=5 nodelay;") == 2
    assert "limit_conn conn_per_client 32;" in done.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_RATE_LIMIT_RPS", "ten"),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
        ("GATEWAY_RATE_LIMIT_RPS", "10r/s"),
        ("GATEWAY_RATE_LIMIT_BURST", "-1"),
        ("GATEWAY_RATE_LIMIT_BURST", "0"),
        ("GATEWAY_CONN_LIMIT", "1e3"),
        ("GATEWAY_CONN_LIMIT", "12345678901"),
    ],
)
def test_a_limit_that_is_not_a_whole_number_stops_the_start_naming_it(
    gateway_dir: GatewayDir, name: str, value: str
) -> None:
    done = gateway_dir.run_entrypoint("-T", **{name: value})
    assert done.returncode == 64, (done.stdout, done.stderr)
    assert name in done.stderr and f"'{value}'" in done.stderr, done.stderr
    assert done.stdout == ""  # nginx never ran
    assert not gateway_dir.run_dir.exists()  # nothing half-written


@pytest.mark.slow
def test_a_raised_burst_lets_more_back_to_back_requests_through(evaluation_api_server: servers.Server) -> None:
    """Burst 40 instead of 20 at 1 request/s: back-to-back requests pass at least 41 before the first
    429 (the default lets 21 through), and the limit still holds."""
    unknown = f"/api/v1/evaluations/{uuid.uuid4()}"
    limits = {"GATEWAY_RATE_LIMIT_RPS": "1", "GATEWAY_RATE_LIMIT_BURST": "40"}
    for url in _run_gateway(f"127.0.0.1:{evaluation_api_server.port}", **limits):
        with httpx.Client(base_url=url, timeout=5) as client:
            statuses = []
            for _ in range(200):
                statuses.append(client.get(unknown).status_code)
                if statuses[-1] == 429:
                    break
    assert statuses[-1] == 429, "no 429 after 200 back-to-back requests"
    assert set(statuses[:-1]) == {401} and len(statuses) - 1 >= 41, statuses


@pytest.mark.slow
def test_the_api_internal_endpoints_are_not_published(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=5) as client:
        for path in ("/metrics", "/readyz", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        # /healthz is the gateway's own.
        health = client.get("/healthz")
        assert health.status_code == 200 and health.text == "ok\n"


@pytest.mark.slow
def test_with_the_api_down_the_gateway_answers_503_in_the_api_error_shape(gateway_without_api: str) -> None:
    response = httpx.post(gateway_without_api + "/api/v1/evaluations", json=valid_evaluation(), timeout=10)
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"
    _assert_security_headers(response)
    # The form still loads.
    assert httpx.get(gateway_without_api + "/", timeout=5).status_code == 200


@pytest.mark.slow
def test_the_callers_traceparent_reaches_the_api_unchanged() -> None:
    """The gateway starts no spans of its own: the caller's W3C trace context is passed through as sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, str]] = []

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(201)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        for url in _run_gateway(f"127.0.0.1:{upstream.server_address[1]}"):
            response = httpx.post(
                f"{url}/api/v1/evaluations",
                json=valid_evaluation(),
                headers={"traceparent": traceparent, "tracestate": "vendor=x"},
                timeout=10,
            )
            assert response.status_code == 201
    finally:
        upstream.shutdown()
        upstream.server_close()
        thread.join(timeout=5)
    assert received[-1]["traceparent"] == traceparent
    assert received[-1]["tracestate"] == "vendor=x"
