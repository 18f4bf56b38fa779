"""Settings (evaluation_api.config): read from the environment, validated when built."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluation_api.config import POLICY_PATH, PROJECT_DIR, Settings, get_settings


@pytest.fixture(autouse=True)
def _fresh_get_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults() -> None:
    settings = Settings()
    assert str(settings.model_service_url) == "http://127.0.0.1:3000/"
    assert settings.database_url == f"sqlite:///{PROJECT_DIR / 'var' / 'evaluations.db'}"
    assert settings.policy_path == POLICY_PATH
    assert settings.auto_migrate is True
    assert settings.log_level == "INFO"
    assert settings.evaluation_deadline_s == 2.0
    assert settings.breaker_threshold >= 1 and settings.breaker_ttl_s > 0


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((POLICY_PATH).read_text(encoding="utf-8"), encoding="utf-8")
    env = {
        "MODEL_SERVICE_URL": "http://10.1.2.3:3100",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
        "POLICY_PATH": str(policy),
        "AUTO_MIGRATE": "false",
        "LOG_LEVEL": "DEBUG",
        "EVALUATION_DEADLINE_S": "1.5",
        "MODEL_RETRY_ATTEMPTS": "5",
        "BREAKER_THRESHOLD": "7",
        "BREAKER_TTL_S": "0.25",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(settings.model_service_url) == "http://10.1.2.3:3100/"
    assert settings.database_url == env["DATABASE_URL"]
    assert settings.policy_path == policy
    assert settings.auto_migrate is False
    assert settings.log_level == "DEBUG"
    assert settings.evaluation_deadline_s == 1.5
    assert settings.model_retry_attempts == 5
    assert (settings.breaker_threshold, settings.breaker_ttl_s) == (7, 0.25)


def test_get_settings_is_cached_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKER_THRESHOLD", "9")
    assert get_settings() is get_settings()
    assert get_settings().breaker_threshold == 9


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://app@db.internal:5432/evaluations", "postgresql+psycopg://app@db.internal:5432/evaluations"),
        ("postgres://app:secret@127.0.0.1/evaluations", "postgresql+psycopg://app:secret@127.0.0.1/evaluations"),
        ("postgresql+psycopg://app@127.0.0.1/evaluations", "postgresql+psycopg://app@127.0.0.1/evaluations"),
        ("sqlite:///var/evaluations.db", "sqlite:///var/evaluations.db"),
        ("sqlite:////tmp/evaluations.db", "sqlite:////tmp/evaluations.db"),
    ],
)
def test_database_url_is_normalised_to_the_pinned_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    assert Settings().database_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1/evaluations",
        "postgresql+asyncpg://app@127.0.0.1/evaluations",
        "postgresql+psycopg2://app@127.0.0.1/evaluations",
        "sqlite://",
        "sqlite:relative.db",
        "evaluations.db",
        "",
    ],
)
def test_other_database_urls_are_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError, match="DATABASE_URL must be"):
        Settings()


@pytest.mark.parametrize(
    "env",
    [
        {"EVALUATION_DEADLINE_S": "0"},
        {"EVALUATION_DEADLINE_S": "-1"},
        {"EVALUATION_DEADLINE_S": "31"},
        {"EVALUATION_DEADLINE_S": "two"},
        {"EVALUATION_DEADLINE_S": "nan"},
        {"EVALUATION_DEADLINE_S": "inf"},
        {"MODEL_CONNECT_TIMEOUT_S": "0"},
        {"MODEL_READ_TIMEOUT_S": "-0.5"},
        {"MODEL_READ_TIMEOUT_S": "inf"},
        # Each attempt's timeouts must fit the deadline's budget (connect + read <= 2 x deadline).
        {"EVALUATION_DEADLINE_S": "0.5"},
        {"EVALUATION_DEADLINE_S": "1", "MODEL_READ_TIMEOUT_S": "1.6"},
        {"MODEL_RETRY_ATTEMPTS": "0"},
        {"MODEL_RETRY_ATTEMPTS": "11"},
        {"BREAKER_THRESHOLD": "0"},
        {"BREAKER_TTL_S": "0"},
        {"BREAKER_TTL_S": "nan"},
        {"MODEL_BATCH_MAX_SIZE": "0"},
        {"MODEL_BATCH_MAX_IN_FLIGHT": "0"},
        {"DATABASE_POOL_SIZE": "0"},
        {"AUTO_MIGRATE": "maybe"},
        {"MODEL_SERVICE_URL": "not a url"},
        {"MODEL_SERVICE_URL": "ftp://127.0.0.1:3000"},
        {"POLICY_PATH": "/nonexistent/policy.yaml"},
    ],
    ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()),
)
def test_invalid_settings_are_refused_at_start(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_short_deadline_is_accepted_with_short_timeouts() -> None:
    settings = Settings(evaluation_deadline_s=0.5, model_connect_timeout_s=0.2, model_read_timeout_s=0.5)
    assert settings.evaluation_deadline_s == 0.5


def test_a_policy_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a file"):
        Settings(policy_path=tmp_path)


def test_an_infinite_breaker_ttl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKER_TTL_S", "inf")
    with pytest.raises(ValidationError):
        Settings()
