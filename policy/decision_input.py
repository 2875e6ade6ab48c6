"""The decision input (what Rego sees as `input`), checked before anything evaluates it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from policy.source import Path

Outcome = Literal["allow", "deny", "require_approval"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "deny", "require_approval")
CHANNELS = ("api", "cli", "mcp")

_STRING_LISTS = (("principal", "roles"), ("principal", "teams"))
_OPTIONAL_STRINGS = (
    ("principal", "type"),
    ("principal", "organization"),
    ("resource", "type"),
    ("tool", "name"),
    ("context", "time"),
)
_OPTIONAL_MAPPINGS = (
    ("principal", "attributes"),
    ("resource", "attributes"),
    ("tool", "arguments"),
)
_ESTIMATES = ("estimated_cost_usd", "estimated_tokens")


def input_problems(value: object) -> list[tuple[Path, str]]:
    """Every way `value` differs from the documented decision input; empty when usable."""
    if not isinstance(value, Mapping):
        return [((), "the decision input must be a mapping")]
    problems: list[tuple[Path, str]] = []
    for section in ("principal", "resource"):
        if not isinstance(value.get(section), Mapping):
            problems.append(((section,), f"{section} must be a mapping"))
    for section in ("tool", "request", "context"):
        if section in value and not isinstance(value[section], Mapping):
            problems.append(((section,), f"{section} must be a mapping"))
    if problems:
        return problems
    for path in (("principal", "id"), ("action",), ("resource", "id")):
        if not _non_empty_string(_get(value, path)):
            problems.append((path, "must be a non-empty string"))
    principal_id = _get(value, ("principal", "id"))
    if isinstance(principal_id, str) and principal_id.startswith("role:"):
        # role:<name> is how Casbin names roles; a principal must never pose as one.
        problems.append((("principal", "id"), "must not start with role:"))
    workspace = _get(value, ("resource", "workspace"))
    if workspace is not None and not isinstance(workspace, str):
        problems.append((("resource", "workspace"), "must be a string or null"))
    if "channel" in value and value["channel"] not in CHANNELS:
        problems.append((("channel",), f"must be one of {', '.join(CHANNELS)}"))
    for path in _OPTIONAL_STRINGS:
        found = _get(value, path)
        if found is not None and not isinstance(found, str):
            problems.append((path, "must be a string"))
    for path in _OPTIONAL_MAPPINGS:
        found = _get(value, path)
        if found is not None and not isinstance(found, Mapping):
            problems.append((path, "must be a mapping"))
    for path in _STRING_LISTS:
        found = _get(value, path)
        if found is not None and not (
            isinstance(found, list) and all(isinstance(item, str) for item in found)
        ):
            problems.append((path, "must be a list of strings"))
    for name in _ESTIMATES:
        found = _get(value, ("context", name))
        if found is not None and (
            isinstance(found, bool) or not isinstance(found, int | float) or found < 0
        ):
            problems.append((("context", name), "must be a number of at least 0"))
    return problems


def _get(value: Mapping[str, object], path: Path) -> object:
    current: object = value
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _non_empty_string(value: object) -> bool:
    return isinstance(value, str) and bool(value)
