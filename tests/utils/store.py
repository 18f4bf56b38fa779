"""An isolated BentoML home for tests that import models or build Bentos.

BentoML reads BENTOML_HOME once, the first time it needs it, so a test process that has already
used the project's store cannot switch. Everything here runs BentoML in a subprocess whose
BENTOML_HOME is a temporary directory: the project's .bentoml is never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import MODEL_NAME
from tests.utils.servers import ROOT, VENV_BIN, project_env

# Calls models.import_model.import_model() and prints its outcome as JSON: the function's own return
# value or exception class, which the CLI (exit code 2 and a log line) does not show.
_IMPORT_MODEL = """
import json, sys
from pathlib import Path
from models.import_model import IntegrityError, import_model
try:
    tag, created = import_model(pickle_path=Path(sys.argv[1]), card_path=Path(sys.argv[2]))
except IntegrityError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"tag": tag, "created": created}))
"""


@dataclass(frozen=True)
class ImportOutcome:
    tag: str | None = None
    created: bool | None = None
    error: str | None = None
    message: str = ""


@dataclass(frozen=True)
class IsolatedStore:
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return project_env(BENTOML_HOME=str(self.home), **extra)

    def run(self, args: list[str], *, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run a command from the project root with this BentoML home; unless check=False, fail the test if
        it fails."""
        result = subprocess.run(
            args, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited with {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def import_model(self, *, pickle_path: Path, card_path: Path) -> ImportOutcome:
        """Call models.import_model.import_model() in a subprocess that uses this store."""
        result = self.run([sys.executable, "-c", _IMPORT_MODEL, str(pickle_path), str(card_path)])
        return ImportOutcome(**json.loads(result.stdout.strip().splitlines()[-1]))

    def import_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m models.import_model ARGS`, whatever its exit code."""
        return self.run([sys.executable, "-m", "models.import_model", *args], check=False)

    def tags(self) -> list[str]:
        """The model tags in the store, as `bentoml models list` reports them."""
        result = self.run([str(VENV_BIN / "bentoml"), "models", "list", "-o", "json"])
        return sorted(m["tag"] for m in json.loads(result.stdout))

    def get(self, tag: str) -> dict[str, Any]:
        result = self.run([str(VENV_BIN / "bentoml"), "models", "get", tag, "-o", "json"])
        info: dict[str, Any] = json.loads(result.stdout)
        return info

    def latest_tag(self) -> str:
        info = self.get(f"{MODEL_NAME}:latest")
        return f"{info['name']}:{info['version']}"

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under the model store: relative path → (size, mtime_ns). Equal snapshots, same store."""
        models = self.home / "models"
        return (
            {
                str(p.relative_to(models)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(models.rglob("*"))
                if p.is_file()
            }
            if models.exists()
            else {}
        )
