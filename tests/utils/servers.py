"""The tests' name for devtools.servers (the launcher lives there so that benchmarks/ need not import tests/)."""

from devtools.servers import (
    PROJECT_ENV_VARS,
    ROOT,
    VENV_BIN,
    Server,
    evaluation_api,
    free_port,
    model_service,
    project_env,
)

__all__ = [
    "PROJECT_ENV_VARS",
    "ROOT",
    "VENV_BIN",
    "Server",
    "evaluation_api",
    "free_port",
    "model_service",
    "project_env",
]
