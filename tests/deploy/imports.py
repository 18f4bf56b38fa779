"""What a body of code imports, and whether a requirements file installs it.

An image that installs one requirements file and copies some packages runs only if every module its
code imports is either copied or installed by that file (with what it depends on). Read statically
(ast), so nothing is imported, and resolved against this venv's installed metadata, which
requirements/constraints.txt pins to the versions the images install.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.utils.servers import ROOT


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, *, in_functions: bool = True) -> set[str]:
    """Absolute module names imported by a file at run time (not under `if TYPE_CHECKING:`).

    With in_functions=False, only what importing the file runs: an import inside a function of a
    module shared with other programs (models/segments.py imports scipy only to train) is that
    module's way of saying the others do without it.
    """
    found: set[str] = set()

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if not in_functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                # `from package import submodule` imports the submodule too, when it is one.
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    return found


def local_file(module: str) -> Path | None:
    """The project file that a module name is, if it is one of ours."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_files(entry: Path) -> set[Path]:
    """entry and every project file that importing it imports, directly or through other project files."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, in_functions=path == entry):
            parts = module.split(".")
            # A module's packages run first: models.segments runs models/__init__.py.
            for i in range(1, len(parts) + 1):
                found = local_file(".".join(parts[:i]))
                if found:
                    todo.append(found)
    return seen


def program_imports(entries: Iterable[Path]) -> tuple[set[Path], set[str]]:
    """The project files a program made of `entries` loads, and every module they import: all the
    imports of the entries (their functions run), only the module-level ones of the rest."""
    entries = set(entries)
    files: set[Path] = set()
    for entry in entries:
        files |= reachable_files(entry)
    modules: set[str] = set()
    for path in files:
        modules |= imported_modules(path, in_functions=path in entries)
    return files, modules


def third_party(modules: Iterable[str]) -> set[str]:
    """Top-level names that are neither the standard library nor the project's own."""
    tops = {m.split(".")[0] for m in modules}
    return {t for t in tops if t not in sys.stdlib_module_names and local_file(t) is None and t != "__future__"}


def local_packages(modules: Iterable[str]) -> set[str]:
    return {m.split(".")[0] for m in modules if local_file(m.split(".")[0])}


def requirement_closure(requirements_file: Path) -> set[str]:
    """Canonical names of the distributions that `pip install -r requirements_file` installs."""
    todo: list[Requirement] = []
    for raw in requirements_file.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"{requirements_file}: options are not read here ({line})"
            todo.append(Requirement(line))
    seen: set[tuple[str, frozenset[str]]] = set()
    environment = default_environment()
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
