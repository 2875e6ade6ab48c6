"""What a bundle deploys: the entries for one gateway, and whether their references resolve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policy.errors import ErrorDetail, PolicyValidationError
from policy.workloads.config import AgentConfig, PipelineConfig, Workload
from policy.workloads.parse import parse_workload, plain_detail


def deployed_to(
    entries: Mapping[str, Any], gateway_id: str | None, filename: str
) -> dict[str, Workload]:
    """Bundle `agents`/`pipelines` entries (`{name: {…to_dict()…, gateways: […]}}`) that
    name `gateway_id` (every entry when it is None), parsed and checked."""
    out: dict[str, Workload] = {}
    details: list[ErrorDetail] = []
    for name, entry in sorted(entries.items()):
        if not isinstance(entry, Mapping):
            details.append(plain_detail(filename, f"{name}: entry is not a mapping"))
            continue
        gateways = entry.get("gateways", [])
        if not isinstance(gateways, list):
            details.append(plain_detail(filename, f"{name}: gateways must be a list"))
            continue
        if gateway_id is not None and gateway_id not in gateways:
            continue
        document = {k: v for k, v in entry.items() if k != "gateways"}
        try:
            workload = parse_workload(document, f"{filename}:{name}")
        except PolicyValidationError as exc:
            details.extend(exc.details)
            continue
        if workload.name != name:
            details.append(plain_detail(filename, f"{name}: entry holds {workload.name!r}"))
            continue
        out[name] = workload
    if details:
        raise PolicyValidationError(details)
    return out


def check_references(
    agents: Mapping[str, AgentConfig], pipelines: Iterable[PipelineConfig]
) -> list[str]:
    """Names used but not defined (agent tools, pipeline roles); empty when all resolve."""
    problems: list[str] = []
    for agent in agents.values():
        for ref in agent.referenced_agents():
            if ref not in agents:
                problems.append(f"agent {agent.name}: tool agent {ref!r} is not deployed")
    for pipeline in pipelines:
        for ref in pipeline.agent_names():
            if ref not in agents:
                problems.append(f"pipeline {pipeline.name}: agent {ref!r} is not deployed")
    return problems
