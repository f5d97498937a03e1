"""The image is built from what the repository pins, like `make install` (no Docker
engine needed: the Dockerfile and .dockerignore are read as text)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shlex
import tomllib

from packaging.requirements import Requirement

from tests.support.corpus import REPO_DIR

DOCKERFILE = (REPO_DIR / "Dockerfile").read_text(encoding="utf-8")
# Continuation lines joined: one instruction per entry.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _in_build_context(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last match wins)."""
    included = True
    for raw in (REPO_DIR / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            included = negated
    return included


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO_DIR / "requirements.lock").read_text(encoding="utf-8").splitlines():
        name, _, version = line.partition("==")
        pins[_normal(name)] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    copies = [
        shlex.split(instruction)[1:-1]
        for instruction in INSTRUCTIONS
        if instruction.startswith("COPY ") and "--from=" not in instruction
    ]
    sources = [source for sources in copies for source in sources]
    assert "requirements.lock" in sources
    for source in sources:
        assert (REPO_DIR / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert _in_build_context(source), f".dockerignore keeps {source} out of the build"


def test_the_image_installs_its_dependencies_from_the_lock_like_make_does() -> None:
    installs = [i for i in INSTRUCTIONS if i.startswith("RUN ") and "pip install" in i]
    dependency_step = next(i for i in installs if "--requirement" in i or " -r " in i)
    assert "--constraint requirements.lock" in dependency_step or (
        "-c requirements.lock" in dependency_step
    )
    # The project itself adds nothing unpinned.
    project_step = next(i for i in installs if "pip install --no-deps ." in i)
    assert project_step
    assert "-c requirements.lock" in (REPO_DIR / "Makefile").read_text(encoding="utf-8")


def test_the_lock_pins_every_runtime_dependency_and_theirs() -> None:
    # Walk the installed metadata from pyproject's runtime dependencies: everything the
    # image will install must have a pin, or the image could drift from the tests.
    pins = _lock()
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    todo = [Requirement(spec) for spec in project["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = _normal(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pins, f"{requirement.name} is installed in the image but not locked"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])
        for spec in importlib.metadata.requires(requirement.name) or ():
            nested = Requirement(spec)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                todo.append(nested)
    assert {"confluent-kafka", "pydantic", "pydantic-core", "structlog"} <= seen
