"""Agents and pipelines: configs by name with immutable versions, validated by `policy.workloads`.

A source holds one or more `kind: Agent` (or `kind: Pipeline`) documents. Writing it creates
a workload per new name and a new version per changed config (unchanged ones are left
alone), all or nothing. Every agent a config references (an agent tool, a pipeline role)
must exist in the organisation or in the same source; a 422 names the field, line and column.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Deployment, Workload, WorkloadVersion
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate
from control_plane.services.plans import quotas
from policy.compile.compiler import canonical_json
from policy.documents.fields import detail_at
from policy.documents.source import Path, RawDocument, load_documents
from policy.errors import ErrorDetail, PolicyValidationError
from policy.workloads import (
    AgentConfig,
    AgentTool,
    PipelineConfig,
    parse_workload,
    parse_workload_source,
)

Kind = Literal["agent", "pipeline"]
DOCUMENT_KIND: dict[str, str] = {"agent": "Agent", "pipeline": "Pipeline"}
COLLECTION: dict[str, str] = {"agent": "agents", "pipeline": "pipelines"}
SOURCE_FILE = "source"


def config_sha256(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config)).hexdigest()


def description(config: Mapping[str, Any]) -> str | None:
    value = config.get("metadata", {}).get("description")
    return value if isinstance(value, str) else None


def references(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The agents a stored (already validated) config names: tools or pipeline roles."""
    workload = parse_workload(config, "stored config")
    if isinstance(workload, AgentConfig):
        return workload.referenced_agents()
    return workload.agent_names()


def _reference_paths(workload: AgentConfig | PipelineConfig) -> Iterator[tuple[Path, str]]:
    """Each agent reference with the document path that holds it."""
    if isinstance(workload, AgentConfig):
        for i, tool in enumerate(workload.tools):
            if isinstance(tool, AgentTool):
                yield ("spec", "tools", i, "agent"), tool.agent
        return
    for key, value in workload.roles.items():
        if key == "routes" and isinstance(value, Mapping):
            for label, agent in value.items():
                yield ("spec", "routes", str(label)), agent
        elif isinstance(value, list):
            for i, agent in enumerate(value):
                yield ("spec", key, i), agent
        elif isinstance(value, str) and key != "strategy":
            yield ("spec", key), value


def _invalid(details: Sequence[ErrorDetail], message: str) -> Invalid:
    plain: list[dict[str, Any]] = [dict(d) for d in details]
    first = plain[0]
    where = ", ".join(
        f"{k} {first[k]}" for k in ("document", "line", "column") if first.get(k) is not None
    )
    summary = f"{message}: {first['message']}" + (f" ({where})" if where else "")
    return Invalid(summary, details=plain)


Parsed = list[tuple[AgentConfig | PipelineConfig, RawDocument]]


def _parse(source: str, kind: Kind) -> Parsed:
    """Validate every document; each comes back with its raw form (for locations and text)."""
    try:
        workloads = parse_workload_source(source, SOURCE_FILE)
        raws = load_documents(source, SOURCE_FILE)
    except PolicyValidationError as exc:
        raise _invalid(exc.details, f"the {kind} config is invalid") from None
    if not workloads:
        raise Invalid(
            f"the source holds no {DOCUMENT_KIND[kind]} document",
            details=[{"field": "source", "message": "no document"}],
        )
    if len(workloads) != len(raws):  # every document parsed cleanly, so this cannot differ
        raise Invalid("the source could not be read document by document")
    details: list[ErrorDetail] = []
    seen: set[str] = set()
    for workload, raw in zip(workloads, raws, strict=True):
        if workload.kind != DOCUMENT_KIND[kind]:
            other = "pipeline" if kind == "agent" else "agent"
            details.append(
                detail_at(
                    raw,
                    ("kind",),
                    f"this collection takes {DOCUMENT_KIND[kind]} documents; send "
                    f"{workload.kind} documents to /api/v1/{COLLECTION[other]}",
                )
            )
        if workload.name in seen:
            details.append(
                detail_at(raw, ("metadata", "name"), f"{workload.name} is defined twice")
            )
        seen.add(workload.name)
    if details:
        raise _invalid(details, f"the {kind} config is invalid")
    return list(zip(workloads, raws, strict=True))


async def _agent_names(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(Workload.name).where(Workload.kind == "agent")))


def _check_references(parsed: Parsed, known_agents: set[str], kind: Kind) -> None:
    details: list[ErrorDetail] = []
    for workload, raw in parsed:
        for path, agent in _reference_paths(workload):
            if agent not in known_agents:
                details.append(
                    detail_at(
                        raw,
                        path,
                        f"no agent named {agent!r} in this organisation; create it first "
                        "(or in the same source)",
                    )
                )
    if details:
        raise _invalid(details, f"the {kind} config references a missing agent")


# -- reading -------------------------------------------------------------------------------


async def _workload(session: AsyncSession, kind: Kind, workload_id: uuid.UUID) -> Workload:
    workload = await session.get(Workload, workload_id)
    if workload is None or workload.kind != kind:
        raise NotFound(f"no such {kind}")
    return workload


async def _version(session: AsyncSession, workload: Workload, version: int) -> WorkloadVersion:
    row = await session.scalar(
        select(WorkloadVersion).where(
            WorkloadVersion.workload_id == workload.id, WorkloadVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"{workload.kind} {workload.name} has no version {version}")
    return row


async def by_name(session: AsyncSession, kind: str, name: str) -> Workload | None:
    found: Workload | None = await session.scalar(
        select(Workload).where(Workload.kind == kind, Workload.name == name)
    )
    return found


async def version_of(session: AsyncSession, workload: Workload, version: int) -> WorkloadVersion:
    return await _version(session, workload, version)


async def latest_configs(
    session: AsyncSession, workloads: Sequence[Workload]
) -> dict[uuid.UUID, dict[str, Any]]:
    if not workloads:
        return {}
    wanted = {w.id: w.latest_version for w in workloads}
    rows = await session.execute(
        select(WorkloadVersion.workload_id, WorkloadVersion.version, WorkloadVersion.config).where(
            WorkloadVersion.workload_id.in_(list(wanted))
        )
    )
    return {wid: config for wid, version, config in rows if wanted[wid] == version}


async def list_workloads(
    session: AsyncSession, kind: Kind, cursor: str | None, limit: int
) -> tuple[list[Workload], str | None]:
    query = select(Workload).where(Workload.kind == kind)
    rows, next_cursor = await paginate(session, query, Workload, cursor, limit)
    return list(rows), next_cursor


async def get(
    session: AsyncSession, kind: Kind, workload_id: uuid.UUID
) -> tuple[Workload, WorkloadVersion]:
    workload = await _workload(session, kind, workload_id)
    return workload, await _version(session, workload, workload.latest_version)


async def list_versions(
    session: AsyncSession, kind: Kind, workload_id: uuid.UUID
) -> list[WorkloadVersion]:
    workload = await _workload(session, kind, workload_id)
    rows = await session.scalars(
        select(WorkloadVersion)
        .where(WorkloadVersion.workload_id == workload.id)
        .order_by(WorkloadVersion.version.desc())
    )
    return list(rows)


async def get_version(
    session: AsyncSession, kind: Kind, workload_id: uuid.UUID, version: int
) -> WorkloadVersion:
    return await _version(session, await _workload(session, kind, workload_id), version)


def to_yaml(config: Mapping[str, Any]) -> str:
    """The config as a YAML document that `POST` takes back unchanged."""
    return yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)


async def export(
    session: AsyncSession, kind: Kind, workload_id: uuid.UUID, version: int | None
) -> tuple[Workload, str]:
    workload = await _workload(session, kind, workload_id)
    row = await _version(session, workload, version or workload.latest_version)
    return workload, to_yaml(row.config)


# -- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    workloads: list[Workload]
    created: list[str]
    updated: list[str]
    unchanged: list[str]


async def apply(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, kind: Kind, source: str
) -> Applied:
    """Create workloads or new versions from every document in `source`, all or nothing."""
    parsed = await asyncio.to_thread(_parse, source, kind)
    known = await _agent_names(session)
    if kind == "agent":
        known |= {workload.name for workload, _raw in parsed}
    _check_references(parsed, known, kind)

    existing = {
        w.name: w for w in await session.scalars(select(Workload).where(Workload.kind == kind))
    }
    if kind == "agent":
        # The plan's agent limit, checked (and the organisation locked) before any write.
        new = {workload.name for workload, _raw in parsed} - set(existing)
        await quotas.ensure_room(session, organization_id, "agents", adding=len(new))
    latest = await latest_configs(session, list(existing.values()))
    now = utcnow()
    result = Applied([], [], [], [])
    for workload_config, raw in parsed:
        name = workload_config.name
        config = workload_config.to_dict()
        digest = config_sha256(config)
        workload = existing.get(name)
        if workload is not None and config_sha256(latest.get(workload.id, {})) == digest:
            result.workloads.append(workload)
            result.unchanged.append(name)
            continue
        if workload is None:
            workload = Workload(kind=kind, name=name, latest_version=1, updated_at=now)
            session.add(workload)
            await session.flush()
            result.created.append(name)
            action = f"{kind}.create"
        else:
            workload.latest_version += 1
            workload.updated_at = now
            result.updated.append(name)
            action = f"{kind}.update"
        session.add(
            WorkloadVersion(
                workload_id=workload.id,
                version=workload.latest_version,
                config=config,
                source=raw.text,
                sha256=digest,
                created_by=actor.label,
            )
        )
        result.workloads.append(workload)
        await audit.record(
            session,
            organization_id,
            actor,
            action,
            kind,
            workload.id,
            name=name,
            version=workload.latest_version,
            sha256=digest,
        )
    await session.flush()
    return result


async def delete(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    kind: Kind,
    workload_id: uuid.UUID,
) -> None:
    """Remove the workload and its versions; refused while a deployment serves or needs it."""
    workload = await _workload(session, kind, workload_id)
    holders = []
    for deployment in await session.scalars(select(Deployment)):
        direct = deployment.kind == kind and deployment.name == workload.name
        needed = kind == "agent" and workload.name in (deployment.requires or {})
        if direct or needed:
            holders.append(f"{deployment.kind} {deployment.name} ({deployment.id})")
    if holders:
        raise Conflict(
            f"{kind} {workload.name} is deployed or needed by a deployment; undeploy first: "
            + ", ".join(sorted(set(holders))),
            details=[{"field": "id", "deployments": sorted(set(holders))}],
        )
    await session.delete(workload)
    await audit.record(
        session,
        organization_id,
        actor,
        f"{kind}.delete",
        kind,
        workload_id,
        name=workload.name,
        latest_version=workload.latest_version,
    )
