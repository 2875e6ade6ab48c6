"""The decision input (what Rego sees as `input`), checked before anything evaluates it.

Inputs are JSON objects, so mappings must be `dict`s (also what json.dumps accepts);
this runs on every decision, hence plain dict lookups rather than a generic walker.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from policy.documents.source import Path

Outcome = Literal["allow", "deny", "require_approval"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "deny", "require_approval")
CHANNELS = ("api", "cli", "mcp")

_OPTIONAL_STRINGS = {
    "principal": ("type", "organization"),
    "resource": ("type",),
    "tool": ("name",),
    "context": ("time",),
}
_OPTIONAL_MAPPINGS = {
    "principal": ("attributes",),
    "resource": ("attributes",),
    "tool": ("arguments",),
}
_ESTIMATES = ("estimated_cost_usd", "estimated_tokens")
_SECOND: list[Any] = [None, ""]  # the last second formatted, and its text


def now_text() -> str:
    """Now as RFC 3339 UTC with microseconds (`2026-12-04T13:19:37.123456Z`), the form of
    `context.time` and of a decision record's time; the seconds part formatted once a second."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if seconds != _SECOND[0]:
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _SECOND[0] = seconds
    return f"{_SECOND[1]}.{nanos // 1000:06d}Z"


def input_problems(value: object) -> list[tuple[Path, str]]:
    """Every way `value` differs from the documented decision input; empty when usable."""
    if not isinstance(value, dict):
        return [((), "the decision input must be a mapping")]
    problems: list[tuple[Path, str]] = []
    sections: dict[str, dict[str, Any]] = {}
    for name in ("principal", "resource", "tool", "request", "context"):
        section = value.get(name)
        if isinstance(section, dict):
            sections[name] = section
        elif section is not None or name in ("principal", "resource"):
            problems.append(((name,), f"{name} must be a mapping"))
    if problems:
        return problems
    principal, resource = sections["principal"], sections["resource"]
    principal_id = principal.get("id")
    if not isinstance(principal_id, str) or not principal_id:
        problems.append((("principal", "id"), "must be a non-empty string"))
    elif principal_id.startswith("role:"):
        # role:<name> is how Casbin names roles; a principal must never pose as one.
        problems.append((("principal", "id"), "must not start with role:"))
    action = value.get("action")
    if not isinstance(action, str) or not action:
        problems.append((("action",), "must be a non-empty string"))
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        problems.append((("resource", "id"), "must be a non-empty string"))
    workspace = resource.get("workspace")
    if workspace is not None and not isinstance(workspace, str):
        problems.append((("resource", "workspace"), "must be a string or null"))
    if "channel" in value and value["channel"] not in CHANNELS:
        problems.append((("channel",), f"must be one of {', '.join(CHANNELS)}"))
    for name, section in sections.items():
        for field in _OPTIONAL_STRINGS.get(name, ()):
            found = section.get(field)
            if found is not None and not isinstance(found, str):
                problems.append(((name, field), "must be a string"))
        for field in _OPTIONAL_MAPPINGS.get(name, ()):
            found = section.get(field)
            if found is not None and not isinstance(found, dict):
                problems.append(((name, field), "must be a mapping"))
    for field in ("roles", "teams"):
        found = principal.get(field)
        if found is not None and not (
            isinstance(found, list) and all(isinstance(item, str) for item in found)
        ):
            problems.append((("principal", field), "must be a list of strings"))
    context = sections.get("context", {})
    for field in _ESTIMATES:
        found = context.get(field)
        if found is not None and (
            isinstance(found, bool) or not isinstance(found, int | float) or found < 0
        ):
            problems.append((("context", field), "must be a number of at least 0"))
    return problems
