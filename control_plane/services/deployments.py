"""Deployments: a workload version served by a gateway, carried in the tenant's signed bundle.

The bundle's `data.json` holds one config per agent name and per pipeline name
(`kaizen.agents` / `kaizen.pipelines`: `{name: {…config…, "gateways": [gateway id, …]}}`),
so every deployment of a name, and every deployment needing that agent, must agree on one
version. A deployment pins the versions of the agents it references (transitively) when it
is made: the version already in the bundle if there is one, else the latest. Deploying a
different version of a name the bundle already holds is a 409 naming who holds it.

Every agent a deployment puts in the bundle (itself or pinned) must have a priced model
(`policy.engine.prices` or its `spec.budget.price_per_1m_tokens`): budgets count what calls cost,
and a model nobody priced would count as free. Otherwise the deploy is a 422 on `spec.model`.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Deployment, Gateway, Workload, WorkloadVersion
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, workloads
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate
from policy.engine.prices import model_price
from policy.workloads import AgentConfig, parse_workload

Key = tuple[str, str]  # (kind, name)


def endpoints(gateway_url: str, kind: str, name: str) -> dict[str, str | None]:
    """Where callers reach the deployment: HTTP API, the CLI command line, MCP."""
    base = gateway_url.rstrip("/")
    command = ["kaizen-studio", "call", name, "--gateway", base, "--input", "<input>"]
    if kind == "agent":
        api = f"{base}/v1/agents/{name}/invoke"
    else:
        api = f"{base}/v1/pipelines/{name}/run"
        command.insert(3, "--pipeline")
    return {"api": api, "cli": shlex.join(command), "mcp": f"{base}/mcp"}


@dataclass(frozen=True)
class _Holder:
    version: int
    by: str


def _holders(rows: Iterable[Deployment], gateways: Mapping[uuid.UUID, str]) -> dict[Key, _Holder]:
    """The version each name has in the bundle, and one deployment that puts it there."""
    held: dict[Key, _Holder] = {}
    for row in rows:
        where = f"{row.kind} {row.name} on gateway {gateways.get(row.gateway_id, row.gateway_id)}"
        held.setdefault((row.kind, row.name), _Holder(row.version, f"deployed as {where}"))
        for agent, version in (row.requires or {}).items():
            held.setdefault(("agent", agent), _Holder(version, f"needed by {where}"))
    return held


async def _gateway_names(session: AsyncSession) -> dict[uuid.UUID, str]:
    return {gid: name for gid, name in await session.execute(select(Gateway.id, Gateway.name))}


async def _pins(
    session: AsyncSession, kind: str, name: str, config: Mapping[str, Any], held: dict[Key, _Holder]
) -> dict[str, int]:
    """Every agent the config needs, transitively, at the version the bundle will carry."""
    pins: dict[str, int] = {}
    pending = [(ref, f"{kind} {name}") for ref in workloads.references(config)]
    while pending:
        agent, needed_by = pending.pop()
        if agent in pins or (kind == "agent" and agent == name):
            continue
        workload = await workloads.by_name(session, "agent", agent)
        if workload is None:
            raise Invalid(
                f"{needed_by} references agent {agent!r}, which does not exist; create it "
                "or deploy another version",
                details=[{"field": "name", "message": f"agent {agent!r} does not exist"}],
            )
        holder = held.get(("agent", agent))
        version = holder.version if holder else workload.latest_version
        row = await workloads.version_of(session, workload, version)
        pins[agent] = version
        pending.extend((ref, f"agent {agent}") for ref in workloads.references(row.config))
    return dict(sorted(pins.items()))


def _require_price(name: str, config: Mapping[str, Any], needed_by: str | None) -> None:
    """A 422 on `spec.model` when the agent's calls could not be priced."""
    agent = parse_workload(config, "stored config")
    if not isinstance(agent, AgentConfig):
        return
    model = agent.model.name
    if model_price(model, agent.budget.price_per_1m_tokens) is not None:
        return
    where = f"agent {name}" + (f" (needed by {needed_by})" if needed_by else "")
    message = (
        f"{where}: model {model!r} has no known price, so its calls cannot be counted against "
        "budgets; use a priced model or declare spec.budget.price_per_1m_tokens {input, output}"
    )
    raise Invalid(message, details=[{"field": "spec.model", "agent": name, "message": message}])


async def _require_prices(
    session: AsyncSession, kind: str, name: str, config: Mapping[str, Any], pins: dict[str, int]
) -> None:
    if kind == "agent":
        _require_price(name, config, None)
    for agent, version in pins.items():
        workload = await workloads.by_name(session, "agent", agent)
        if workload is not None:
            row = await workloads.version_of(session, workload, version)
            _require_price(agent, row.config, f"{kind} {name}")


async def create(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    gateway_id: uuid.UUID,
    kind: str,
    name: str,
    version: int | None,
) -> tuple[Deployment, Gateway, bool]:
    """Deploy (or move to another version); True when a new deployment was created."""
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFound("no such gateway", details=[{"field": "gateway_id"}])
    workload = await workloads.by_name(session, kind, name)
    if workload is None:
        raise NotFound(f"no {kind} named {name!r}", details=[{"field": "name"}])
    version = version or workload.latest_version
    try:
        row = await workloads.version_of(session, workload, version)
    except NotFound as exc:
        raise NotFound(exc.message, details=[{"field": "version"}]) from None

    existing = await session.scalar(
        select(Deployment).where(
            Deployment.gateway_id == gateway_id, Deployment.kind == kind, Deployment.name == name
        )
    )
    if existing is not None and existing.version == version:
        raise Conflict(
            f"{kind} {name} version {version} is already deployed to gateway {gateway.name}",
            details=[{"field": "version", "deployment_id": str(existing.id)}],
        )
    others = [d for d in await session.scalars(select(Deployment)) if d is not existing]
    held = _holders(others, await _gateway_names(session))
    pins = await _pins(session, kind, name, row.config, held)
    await _require_prices(session, kind, name, row.config, pins)
    holder = held.get((kind, name))
    if holder is not None and holder.version != version:
        raise Conflict(
            f"the bundle already carries {kind} {name} at version {holder.version} "
            f"({holder.by}); one version per name: deploy version {holder.version} or "
            "undeploy that first",
            details=[{"field": "version", "bundle_version": holder.version}],
        )

    now = utcnow()
    if existing is None:
        deployment = Deployment(
            gateway_id=gateway_id,
            workload_id=workload.id,
            kind=kind,
            name=name,
            version=version,
            requires=pins,
            created_by=actor.label,
            updated_at=now,
        )
        session.add(deployment)
        await session.flush()
    else:
        deployment = existing
        previous = existing.version
        deployment.version, deployment.requires, deployment.updated_at = version, pins, now
    await audit.record(
        session,
        organization_id,
        actor,
        "deployment.create" if existing is None else "deployment.update",
        "deployment",
        deployment.id,
        gateway_id=str(gateway_id),
        gateway=gateway.name,
        kind=kind,
        name=name,
        version=version,
        requires=pins,
        **({} if existing is None else {"previous_version": previous}),
    )
    return deployment, gateway, existing is None


async def get(session: AsyncSession, deployment_id: uuid.UUID) -> tuple[Deployment, Gateway]:
    deployment = await session.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFound("no such deployment")
    gateway = await session.get(Gateway, deployment.gateway_id)
    if gateway is None:  # the foreign key cascades, so only a concurrent delete gets here
        raise NotFound("no such deployment")
    return deployment, gateway


async def list_deployments(
    session: AsyncSession,
    cursor: str | None,
    limit: int,
    *,
    gateway_id: uuid.UUID | None = None,
    kind: str | None = None,
    name: str | None = None,
) -> tuple[list[tuple[Deployment, Gateway]], str | None]:
    query = select(Deployment)
    if gateway_id is not None:
        query = query.where(Deployment.gateway_id == gateway_id)
    if kind is not None:
        query = query.where(Deployment.kind == kind)
    if name is not None:
        query = query.where(Deployment.name == name)
    rows, next_cursor = await paginate(session, query, Deployment, cursor, limit)
    gateway_ids = {d.gateway_id for d in rows}
    gateways = {
        g.id: g for g in await session.scalars(select(Gateway).where(Gateway.id.in_(gateway_ids)))
    }
    return [(d, gateways[d.gateway_id]) for d in rows if d.gateway_id in gateways], next_cursor


async def for_gateway(session: AsyncSession, gateway_id: uuid.UUID) -> list[Deployment]:
    rows = await session.scalars(
        select(Deployment)
        .where(Deployment.gateway_id == gateway_id)
        .order_by(Deployment.kind, Deployment.name)
    )
    return list(rows)


async def delete(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, deployment_id: uuid.UUID
) -> Deployment:
    deployment, gateway = await get(session, deployment_id)
    await session.delete(deployment)
    await audit.record(
        session,
        organization_id,
        actor,
        "deployment.delete",
        "deployment",
        deployment_id,
        gateway_id=str(gateway.id),
        gateway=gateway.name,
        kind=deployment.kind,
        name=deployment.name,
        version=deployment.version,
    )
    return deployment


async def bundle_entries(
    session: AsyncSession,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """`kaizen.agents` and `kaizen.pipelines` for the bundle: each deployed config (and each
    agent a deployment needs) with the ids of the gateways it is deployed to."""
    rows = list(await session.scalars(select(Deployment)))
    if not rows:
        return {}, {}
    versions: dict[Key, int] = {}
    gateways: dict[Key, set[str]] = {}
    for row in rows:
        versions.setdefault((row.kind, row.name), row.version)
        gateways.setdefault((row.kind, row.name), set()).add(str(row.gateway_id))
    for row in rows:
        for agent, version in (row.requires or {}).items():
            versions.setdefault(("agent", agent), version)
    names = sorted({name for _kind, name in versions})
    configs: dict[tuple[str, str, int], dict[str, Any]] = {}
    found = await session.execute(
        select(Workload.kind, Workload.name, WorkloadVersion.version, WorkloadVersion.config)
        .join(WorkloadVersion, WorkloadVersion.workload_id == Workload.id)
        .where(Workload.name.in_(names))
    )
    for kind, name, version, config in found:
        configs[(kind, name, version)] = config
    out: dict[str, dict[str, dict[str, Any]]] = {"agent": {}, "pipeline": {}}
    for (kind, name), version in sorted(versions.items()):
        config = configs.get((kind, name, version))
        if config is None:
            raise Conflict(f"{kind} {name} version {version} is deployed but no longer exists")
        out[kind][name] = {**config, "gateways": sorted(gateways.get((kind, name), set()))}
    return out["agent"], out["pipeline"]
