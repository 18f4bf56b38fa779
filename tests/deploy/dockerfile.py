"""Read a Dockerfile into stages and instructions, and a .dockerignore into a matcher: enough to check
what deploy/*.Dockerfile build and run without a Docker engine (this machine has none)."""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, CMD, ...
    args: str  # the rest of the line, continuation lines joined

    def exec_form(self) -> list[str]:
        """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments; the JSON (exec) form is required here."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :].strip()  # options (--interval=...) come first
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec form: {self.args}"
        return value

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """`COPY --from=build /a /b` -> ({"from": "build"}, ["/a", "/b"])."""
        flags: dict[str, str] = {}
        words: list[str] = []
        for word in shlex.split(self.args):
            if word.startswith("--") and not words:
                name, _, value = word[2:].partition("=")
                flags[name] = value
            else:
                words.append(word)
        return flags, words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(path: Path) -> list[Stage]:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may sit between continuation lines too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path} ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value).replace("$" + name, value)
            stages.append(Stage(base=base, name=words[2] if len(words) >= 3 and words[1].upper() == "AS" else None))
            continue
        assert stages, f"{path}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, rest))
    return stages


@dataclass
class DockerIgnore:
    """The rules of a .dockerignore: the last pattern that matches a path decides; `!` re-includes."""

    rules: list[tuple[bool, str]]  # (excluded?, pattern)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            excluded = not line.startswith("!")
            rules.append((excluded, line.lstrip("!").strip("/")))
        return cls(rules)

    def excludes(self, relpath: str) -> bool:
        parts = relpath.strip("/").split("/")
        # A path is also excluded or included through any directory above it.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for is_exclusion, pattern in self.rules:
            if any(_match(pattern, p) for p in prefixes):
                excluded = is_exclusion
        return excluded


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase("/".join(path.split("/")[i:]), tail) for i in range(len(path.split("/"))))
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")
