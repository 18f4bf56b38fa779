"""What a program really loads, and whether a requirements file installs what its code imports.

The program is imported for real, in a fresh interpreter (-I: no PYTHONPATH, no current directory)
whose only project files are those an image holds, copied to a temporary directory: a project file
the image lacks fails the import. The third-party modules the project's code imports are resolved
against this venv's installed metadata, which requirements/constraints.txt pins to the versions the
images install. (Libraries' own optional imports are theirs to handle, so only ours are checked.)
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.utils.servers import ROOT, project_env

# Imports the named modules (a name ending in ".*" also imports every module of that package, except
# those given after "!") and prints every module then loaded, and those that the project's own code
# imported itself (seen through __import__, which every import statement calls).
_PROBE = """
import builtins, importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
ours = set(sys.argv[2].split(","))
direct = set()
real_import = builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and str((globals or {}).get("__name__", "")).split(".")[0] in ours:
        direct.add(name)
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
skip = tuple(a[1:] for a in sys.argv[3:] if a.startswith("!"))
for name in (a for a in sys.argv[3:] if not a.startswith("!")):
    if name.endswith(".*"):
        package = importlib.import_module(name[:-2])
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.startswith(skip):
                importlib.import_module(info.name)
    else:
        importlib.import_module(name)
print(json.dumps({"loaded": sorted(sys.modules), "direct": sorted(direct)}))
"""


@dataclass(frozen=True)
class Loaded:
    all: set[str]  # every module in sys.modules afterwards
    direct: set[str]  # the modules the project's own files imported


def load(modules: Iterable[str], *, files: Iterable[Path], workdir: Path, **env: str) -> Loaded:
    """Import `modules` in a fresh interpreter where only `files` (project paths) are importable."""
    ours = set()
    for path in files:
        target = workdir / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        ours.add(path.relative_to(ROOT).parts[0].removesuffix(".py"))
    result = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(workdir), ",".join(sorted(ours)), *modules],
        cwd=workdir,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"importing {list(modules)} failed:\n{result.stderr[-3000:]}"
    found = json.loads(result.stdout.splitlines()[-1])
    return Loaded(all=set(found["loaded"]), direct=set(found["direct"]))


def not_installed(modules: Iterable[str], requirements_file: Path) -> dict[str, set[str]]:
    """Top-level third-party modules among `modules` that `pip install -r requirements_file` does not
    install, with the distributions that provide them here."""
    installed = requirement_closure(requirements_file)
    tops = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
    return {top: distributions(top) for top in tops if not distributions(top) & installed and _third_party(top)}


def _third_party(top: str) -> bool:
    return top != "__future__" and not (ROOT / top).is_dir() and not (ROOT / f"{top}.py").is_file()


def requirement_closure(requirements_file: Path) -> set[str]:
    """Canonical names of the distributions that `pip install -r requirements_file` installs."""
    todo: list[Requirement] = []
    environment = default_environment()
    # A lock file (requirements/lock/) continues lines with a backslash and adds --hash options.
    text = requirements_file.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = re.sub(r"\s--hash=\S+", "", " " + raw.split("#", 1)[0]).strip()
        if line:
            assert not line.startswith("-"), f"{requirements_file}: options are not read here ({line})"
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):  # type: ignore[arg-type]
                todo.append(requirement)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra})
                for extra in extras  # type: ignore[dict-item]
            ):
                todo.append(dependency)
    return {name for name, _ in seen}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())  # reads every installed distribution


def distributions(top_level: str) -> set[str]:
    """The installed distributions that provide a top-level module."""
    return {canonicalize_name(d) for d in _packages_distributions().get(top_level, [])}
