"""deploy/compose.yaml: valid against the Compose Specification's JSON schema (the copy that
check-jsonschema ships, so offline), then the rules the schema cannot express: who publishes a
port, who can reach whom, and that each service starts only once what it needs is healthy."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.deploy import dockerfile
from tests.deploy.files import COMPOSE_FILE, DEPLOY, DEPLOY_DOC, relative
from tests.deploy.gateway import GATEWAY_CONF
from tests.utils.servers import ROOT

Compose = dict[str, Any]

LONG_RUNNING = ("model-service", "postgres", "evaluation-api", "gateway")


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_system_is_the_four_services_its_portfolio_worker_and_a_one_shot_migration(compose: Compose) -> None:
    assert set(compose["services"]) == {*LONG_RUNNING, "portfolio-worker", "migrate"}


def test_the_portfolio_worker_shares_the_apis_run_directory_and_database_and_reaches_nothing_else(
    compose: Compose,
) -> None:
    services = compose["services"]
    api, worker = services["evaluation-api"], services["portfolio-worker"]
    # The directory both see is the one the API's image names (PORTFOLIO_RUN_DIR), on one named volume.
    (run_dir,) = [
        i.args.split("=", 1)[1]
        for i in dockerfile.parse(DEPLOY / "evaluation-api.Dockerfile")[-1].all("ENV")
        if i.args.startswith("PORTFOLIO_RUN_DIR=")
    ]
    assert f"portfolio-runs:{run_dir}" in api["volumes"] and f"portfolio-runs:{run_dir}" in worker["volumes"]
    assert "portfolio-runs" in compose["volumes"]
    assert worker["environment"]["DATABASE_URL"] == api["environment"]["DATABASE_URL"]
    assert worker["environment"]["PORTFOLIO_RETENTION_DAYS"] == api["environment"]["PORTFOLIO_RETENTION_DAYS"]
    assert worker["networks"] == ["data"]  # PostgreSQL only: the model is in its image
    assert {d: c["condition"] for d, c in worker["depends_on"].items()} == {
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    # Built from the API's image of the same version, with its own Dockerfile.
    assert worker["build"]["args"]["API_IMAGE"] == api["image"]
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    assert "command" not in worker  # the image's CMD: python -m portfolio.worker


def test_only_the_gateway_publishes_a_port_and_by_default_on_loopback(compose: Compose) -> None:
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"gateway"}
    (port,) = compose["services"]["gateway"]["ports"]
    assert port == "${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8080}:8080"
    assert re.search(r"^\s*listen 8080;", GATEWAY_CONF.read_text(encoding="utf-8"), re.MULTILINE)


def _networks(compose: Compose, service: str) -> set[str]:
    return set(compose["services"][service].get("networks", []))


def test_the_model_service_is_reachable_only_by_the_api_on_an_internal_network(compose: Compose) -> None:
    model_networks = _networks(compose, "model-service")
    assert model_networks
    for network in model_networks:
        assert compose["networks"][network].get("internal") is True, f"{network} must have no route outside"
    neighbours = {
        name for name in compose["services"] if name != "model-service" and _networks(compose, name) & model_networks
    }
    assert neighbours == {"evaluation-api"}


def test_postgres_is_reachable_only_by_the_api_its_worker_and_the_migrations(compose: Compose) -> None:
    data = _networks(compose, "postgres")
    assert all(compose["networks"][n].get("internal") is True for n in data)
    assert {n for n in compose["services"] if n != "postgres" and _networks(compose, n) & data} == {
        "evaluation-api",
        "portfolio-worker",
        "migrate",
    }
    # Every service is on a declared network, none on Compose's default one.
    assert all(compose["services"][n].get("networks") for n in compose["services"])


def _image_healthcheck(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if not build:
        return False
    stages = dockerfile.parse((DEPLOY / build["context"] / build["dockerfile"]).resolve())
    return stages[-1].last("HEALTHCHECK") is not None


def test_each_service_starts_once_what_it_needs_is_healthy(compose: Compose) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        service = services[name]
        assert "healthcheck" in service or _image_healthcheck(service), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
    assert set(services["evaluation-api"]["depends_on"]) == {"model-service", "postgres", "migrate"}
    assert set(services["gateway"]["depends_on"]) == {"evaluation-api"}
    assert set(services["migrate"]["depends_on"]) == {"postgres"}


def test_healthchecks_ask_real_endpoints(compose: Compose, api_serves: Callable[[str], bool]) -> None:
    def url(service: str) -> str:
        test = compose["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD"
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test))
        assert found, test
        return found.group(1) + found.group(2)

    assert url("model-service") == "3000/readyz"  # BentoML's: the model is loaded
    assert url("evaluation-api") == "8000/readyz"  # the model service and the database answer
    assert api_serves("/readyz")


def test_the_api_and_its_migrations_share_one_image_and_only_the_migration_migrates(compose: Compose) -> None:
    services = compose["services"]
    api, migrate = services["evaluation-api"], services["migrate"]
    assert api["image"] == migrate["image"] and api["build"] == migrate["build"]
    assert migrate["command"] == ["python", "-m", "evaluation_api.migrate"]
    assert migrate["restart"] == "no"
    assert api["environment"]["AUTO_MIGRATE"] == "false"
    assert api["environment"]["DATABASE_URL"] == migrate["environment"]["DATABASE_URL"]
    assert api["environment"]["MODEL_SERVICE_URL"] == "http://model-service:3000"
    for service in (api, services["gateway"]):
        # Built from the repository root, with a Dockerfile under deploy/.
        assert (DEPLOY / service["build"]["context"]).resolve() == ROOT
        assert (ROOT / service["build"]["dockerfile"]).is_file()


def test_the_gateway_proxies_to_the_api_service_by_its_compose_name(compose: Compose) -> None:
    upstream = re.search(r"server ([\w-]+):(\d+);", GATEWAY_CONF.read_text(encoding="utf-8"))
    assert upstream
    assert upstream.group(1) in compose["services"]
    assert upstream.group(2) == "8000"


def test_postgres_keeps_its_data_in_a_volume_and_no_password_is_committed(compose: Compose) -> None:
    postgres = compose["services"]["postgres"]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "postgres-data" in compose["volumes"]
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    url = compose["services"]["evaluation-api"]["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://eligibility:${POSTGRES_PASSWORD:?")
    assert url.endswith("@postgres:5432/eligibility")
    # docs/DEPLOY.md says how to set it.
    assert "POSTGRES_PASSWORD" in DEPLOY_DOC.read_text(encoding="utf-8")


def test_the_model_service_image_is_the_bento_documented_in_deploy_md(compose: Compose) -> None:
    image = compose["services"]["model-service"]["image"]
    assert image == "${MODEL_SERVICE_IMAGE:-credit_card_segmentation:latest}"
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert "bentoml containerize" in doc and "credit_card_segmentation:latest" in doc
    assert relative(COMPOSE_FILE) in doc
