"""requirements/lock/*.txt (made by `make lock`) agree with what they are made from: every package
hash-pinned, at the version constraints.txt pins, and every requirement of the input file in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
LOCKED = ("dev", "evaluation-api", "model-service", "portfolio-worker")


def _entries(path: Path) -> dict[str, tuple[Requirement, list[str]]]:
    """A lock's packages: name -> (requirement, its hashes)."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    entries = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("--hash") else raw
        hashes = re.findall(r"--hash=(\S+)", line)
        spec = re.sub(r"\s--hash=\S+", "", " " + line).strip()
        if spec:
            requirement = Requirement(spec)
            entries[canonicalize_name(requirement.name)] = (requirement, hashes)
    return entries


def _pins(path: Path) -> dict[str, str]:
    """name -> version of an input file, following -r includes."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(_pins(path.parent / line[3:].strip()))
        elif line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.mark.parametrize("name", LOCKED)
def test_every_locked_package_has_hashes_and_the_constrained_version(name: str) -> None:
    constraints = _pins(REQUIREMENTS / "constraints.txt")
    lock = _entries(REQUIREMENTS / "lock" / f"{name}.txt")
    assert lock, f"lock/{name}.txt is empty"
    for package, (requirement, hashes) in lock.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"lock/{name}.txt: {package} has no sha256"
        (specifier,) = requirement.specifier
        applies_here = requirement.marker is None or requirement.marker.evaluate(default_environment())  # type: ignore[arg-type]
        if applies_here:
            assert constraints.get(package) == specifier.version, (
                f"lock/{name}.txt has {package}=={specifier.version}, constraints.txt "
                f"{constraints.get(package)}: run `make lock`"
            )


@pytest.mark.parametrize("name", LOCKED)
def test_every_requirement_is_locked_at_its_pin(name: str) -> None:
    lock = _entries(REQUIREMENTS / "lock" / f"{name}.txt")
    for package, version in _pins(REQUIREMENTS / f"{name}.txt").items():
        assert package in lock, f"requirements/{name}.txt needs {package}, lock/{name}.txt lacks it: run `make lock`"
        (specifier,) = lock[package][0].specifier
        assert specifier.version == version, f"{package}: {version} wanted, {specifier.version} locked: run `make lock`"
