"""`kind: Pipeline` specs: the pattern and the agents that play its roles."""

from __future__ import annotations

from typing import Any

from policy.documents.fields import NAME, FieldReader
from policy.documents.source import Path
from policy.workloads.config import PATTERNS, PipelineConfig
from policy.workloads.values import (
    MAX_STEPS,
    read_budget,
    read_int,
    read_limits,
    read_optional_string,
    read_schema,
)

ENSEMBLE_STRATEGIES = ("majority", "aggregator")


def parse_pipeline(
    reader: FieldReader, value: object, name: str, description: str | None
) -> PipelineConfig | None:
    if not isinstance(value, dict):
        reader.mapping(value, ("spec",))
        return None
    pattern = reader.choice(value.get("pattern"), ("spec", "pattern"), tuple(PATTERNS))
    if pattern is None:
        if "pattern" not in value:
            reader.error(("spec",), "missing required field 'pattern'")
        return None
    required, optional = PATTERNS[pattern]
    common = ("pattern", "description", "input_schema", "output_schema", "limits", "budget")
    spec = reader.mapping(value, ("spec",), required=required, optional=(*optional, *common))
    if spec is None:
        return None
    before = len(reader.details)
    roles: dict[str, Any] = {}
    for key in (*required, *optional):
        if key not in spec:
            continue
        path = ("spec", key)
        role = _role(reader, pattern, key, spec[key], path)
        if role is not None:
            roles[key] = role
    _pattern_rules(reader, pattern, roles)
    pipeline = PipelineConfig(
        name=name,
        pattern=pattern,  # type: ignore[arg-type]  # checked against PATTERNS above
        roles=roles,
        description=read_optional_string(reader, spec, ("spec", "description")) or description,
        input_schema=read_schema(reader, spec, ("spec", "input_schema")),
        output_schema=read_schema(reader, spec, ("spec", "output_schema")),
        limits=read_limits(reader, spec.get("limits"), ("spec", "limits")),
        budget=read_budget(reader, spec.get("budget"), ("spec", "budget"), priced=False),
    )
    return pipeline if len(reader.details) == before else None


def _role(reader: FieldReader, pattern: str, key: str, value: object, path: Path) -> Any:
    if key in ("agents", "workers", "debaters"):
        names = reader.strings(value, path, pattern=NAME, hint="an agent name")
        if isinstance(value, list) and not value:
            reader.error(path, "needs at least one agent")
        if len(set(names)) != len(names):
            reader.error(path, "names an agent twice")
        return list(names)
    if key == "routes":
        if not isinstance(value, dict):
            reader.error(path, "expected a mapping of route label to agent name")
            return None
        routes = value
        if not routes:
            reader.error(path, "needs at least one route")
        out = {}
        for label, agent in routes.items():
            name = reader.name(agent, (*path, label))
            if name is not None:
                out[label] = name
        return out
    if key == "strategy":
        return reader.choice(value, path, ENSEMBLE_STRATEGIES)
    if key == "threshold":
        number = reader.number(value, path, minimum=0.5)
        if number is not None and number > 1:
            reader.error(path, f"must be at most 1, got {number:g}")
            return None
        return number
    if key in ("max_rounds", "rounds"):
        return read_int(reader, value, path, minimum=1, maximum=MAX_STEPS)
    return reader.name(value, path)  # router, default, aggregator, controller, supervisor, …


def _pattern_rules(reader: FieldReader, pattern: str, roles: dict[str, Any]) -> None:
    if pattern == "ensemble":
        strategy = roles.setdefault(
            "strategy", "aggregator" if "aggregator" in roles else "majority"
        )
        if strategy == "aggregator" and "aggregator" not in roles:
            reader.error(("spec",), "strategy aggregator needs an aggregator agent")
    if pattern == "debate" and len(roles.get("debaters", [])) < 2:
        reader.error(("spec", "debaters"), "a debate needs at least two debaters")
    if pattern == "handoff" and roles.get("entry") not in roles.get("agents", []):
        reader.error(("spec", "entry"), "entry must be one of agents")
