"""requirements.lock (what `make` installs, hash-checked) and pyproject.toml's ranges cannot
drift, either way: every dependency of the project and of its dev extra is locked, at a
version its range admits, with the hashes pip needs for --require-hashes; and nothing is
locked that pyproject.toml no longer asks for, directly or through another locked package
(the lock's `# via` annotations say which). `make lock` re-resolves."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Set as AbstractSet
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements.lock").read_text()
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
PROJECT = "kaizen-studio (pyproject.toml)"
# Locked for `make` (pip first, then the project built with --no-build-isolation), not
# asked for by the project: scripts/lock.sh hands them to the resolver itself.
INSTALLER = frozenset({"pip", "setuptools"})


def _locked(text: str) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of each entry of the lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (match.group(2), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            entries[current][1].append(line.strip().removesuffix("\\").strip())
    return entries


def _parents(text: str) -> dict[str, set[str]]:
    """name → what it is locked for: the `# via` lines under each entry (PROJECT or names)."""
    parents: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            parents[current] = set()
            continue
        comment = line.strip().removeprefix("#").strip()
        if current is None or not line.strip().startswith("#") or comment == "via":
            continue
        source = comment.removeprefix("via ").strip()
        parents[current].add(source if source == PROJECT else canonicalize_name(source))
    return parents


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(text)
        for text in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


def _left_over(text: str, declared: AbstractSet[str]) -> list[str]:
    """What the lock holds that pyproject.toml (`declared`) no longer asks for, or mislabels."""
    parents = _parents(text)
    problems = []
    for name, sources in sorted(parents.items()):
        if PROJECT in sources and name not in declared:
            problems.append(f"{name} is locked for pyproject.toml, which no longer asks for it")
        elif PROJECT not in sources and name in declared:
            problems.append(f"{name} is in pyproject.toml but not locked for it")
        elif not sources and name not in INSTALLER:
            problems.append(f"{name} is locked for nothing")
        for gone in sorted(sources - parents.keys() - {PROJECT}):
            problems.append(f"{name} is locked for {gone}, which the lock no longer has")
    return problems


def test_every_dependency_is_locked_at_a_version_its_range_admits() -> None:
    locked = _locked(LOCK)
    problems = []
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not in requirements.lock (run `make lock`)")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock has {locked[name][0]} (run `make lock`)")
    assert not problems, "\n".join(problems)


def test_nothing_is_locked_that_pyproject_no_longer_asks_for() -> None:
    declared = {canonicalize_name(requirement.name) for requirement in _declared()}
    assert _left_over(LOCK, declared) == [], "run `make lock`"
    assert {name for name, sources in _parents(LOCK).items() if not sources} == INSTALLER


def test_a_dependency_removed_from_pyproject_but_left_in_the_lock_is_found() -> None:
    """What removing opa-python-client without `make lock` would have left behind."""
    declared = {canonicalize_name(requirement.name) for requirement in _declared()}
    stale = (
        "opa-python-client==3.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
        "    # via kaizen-studio (pyproject.toml)\n"
        "opa-only-helper==1.0 \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "    # via\n    #   opa-python-client\n    #   retired-package\n"
    )
    assert _left_over(LOCK + stale, declared) == [
        "opa-only-helper is locked for retired-package, which the lock no longer has",
        "opa-python-client is locked for pyproject.toml, which no longer asks for it",
    ]
    assert _left_over(LOCK, declared - {"fastapi"}) == [
        "fastapi is locked for pyproject.toml, which no longer asks for it"
    ]


def test_every_locked_file_is_hash_pinned_and_the_installer_is_locked_too() -> None:
    locked = _locked(LOCK)
    assert locked.keys() >= INSTALLER
    unpinned = [name for name, (_version, hashes) in locked.items() if not hashes]
    assert not unpinned
    assert all(
        re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", digest)
        for _version, hashes in locked.values()
        for digest in hashes
    )
