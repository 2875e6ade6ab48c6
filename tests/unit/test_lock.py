"""requirements.lock (what `make` installs, hash-checked) and pyproject.toml's ranges cannot
drift: every dependency of the project and of its dev extra is locked, at a version its
range admits, with the hashes pip needs for --require-hashes. `make lock` re-resolves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of each entry of the lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (match.group(2), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            entries[current][1].append(line.strip().removesuffix("\\").strip())
    return entries


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(text)
        for text in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


def test_every_dependency_is_locked_at_a_version_its_range_admits() -> None:
    locked = _locked()
    problems = []
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not in requirements.lock (run `make lock`)")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock has {locked[name][0]} (run `make lock`)")
    assert not problems, "\n".join(problems)


def test_every_locked_file_is_hash_pinned_and_the_installer_is_locked_too() -> None:
    locked = _locked()
    assert {"pip", "setuptools"} <= locked.keys()
    unpinned = [name for name, (_version, hashes) in locked.items() if not hashes]
    assert not unpinned
    assert all(
        re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", digest)
        for _version, hashes in locked.values()
        for digest in hashes
    )
