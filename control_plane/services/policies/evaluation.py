"""A policy set read from the database to be evaluated after its transaction ended: the compile
context (credentials, deployments, revoked sessions), simulation and policy tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import ApiKey
from control_plane.errors import NotFound
from control_plane.services import connectors, deployments, gateways, rego_tasks
from control_plane.services import sessions as user_sessions
from control_plane.services.keys import KeyRing
from control_plane.services.plans import bundle as plan_bundle
from control_plane.services.policies.revisions import current_revision
from control_plane.services.policies.versions import draft_versions, read_sources
from control_plane.services.rego_sandbox import RegoSandbox
from policy.compile.compiler import CompileContext
from policy.compile.testrunner import PolicyTestReport


def describe(action: str, names: list[str]) -> str:
    """How a refusal names what was being evaluated: the action and the policies."""
    return f"{action} policies {', '.join(names)}" if names else f"{action} the policy set"


async def compile_context(
    session: AsyncSession, organization_id: uuid.UUID, keys: KeyRing
) -> CompileContext:
    now = utcnow()
    api_keys = await session.scalars(
        select(ApiKey).where(
            ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    )
    agents, pipelines = await deployments.bundle_entries(session)
    return CompileContext(
        connectors=await connectors.bundle_entries(session, agents),
        organization_id=str(organization_id),
        api_keys=[_api_key_entry(k) for k in api_keys],
        jwks=keys.jwks(),
        agents=agents,
        pipelines=pipelines,
        revoked_sessions=await user_sessions.live_revoked_sids(session, now),
        mcp_resources=await gateways.mcp_resources(session),
    )


def _api_key_entry(key: ApiKey) -> dict[str, Any]:
    """What a sidecar needs to enforce the key alone: role, scopes, expiry (Unix seconds,
    rounded down so the sidecar never accepts it later than the control plane does)."""
    entry: dict[str, Any] = {
        "name": key.name,
        "key_hash": key.key_hash,
        "roles": [key.role],
        "scopes": list(key.scopes or []),
    }
    if key.expires_at is not None:
        entry["expires_at"] = int(key.expires_at.timestamp())
    return entry


async def selected_versions(session: AsyncSession, draft: bool) -> dict[str, int]:
    if draft:
        return await draft_versions(session)
    current = await current_revision(session)
    if current is None:
        raise NotFound("nothing is published yet; simulate the drafts instead")
    return dict(current.policies)


@dataclass(frozen=True)
class Prepared:
    """A policy set read from the database, to be evaluated after its transaction ended:
    on SQLite every transaction holds the one write lock, and on PostgreSQL a pooled
    connection, so no transaction stays open while tenant Rego runs."""

    versions: dict[str, int]
    sources: list[tuple[str, str]]
    context: CompileContext

    def described(self, action: str) -> str:
        return describe(action, [name for name, _ in self.sources])


async def prepare(
    session: AsyncSession, organization_id: uuid.UUID, keys: KeyRing, versions: dict[str, int]
) -> Prepared:
    sources = await read_sources(session, versions)
    plan = await plan_bundle.plan_source(session)  # the plan's monthly executions budget
    if plan is not None:
        sources.append(plan)
    return Prepared(versions, sources, await compile_context(session, organization_id, keys))


async def prepare_selected(
    session: AsyncSession, organization_id: uuid.UUID, keys: KeyRing, *, draft: bool
) -> Prepared:
    """The drafts (or the published set), for simulate and tests."""
    return await prepare(session, organization_id, keys, await selected_versions(session, draft))


async def simulate(
    sandbox: RegoSandbox,
    organization_id: uuid.UUID,
    prepared: Prepared,
    decision_input: dict[str, Any],
) -> dict[str, Any]:
    """The decision the prepared set would make; nothing is reserved."""
    principal = decision_input.get("principal")
    if isinstance(principal, dict):
        principal.setdefault("organization", str(organization_id))
    decision: dict[str, Any] = await sandbox.run(
        str(organization_id),
        prepared.described("simulating"),
        rego_tasks.simulate,
        prepared.sources,
        prepared.context,
        decision_input,
    )
    return decision


async def test(
    sandbox: RegoSandbox, organization_id: uuid.UUID, prepared: Prepared
) -> dict[str, Any]:
    report: PolicyTestReport = await sandbox.run(
        str(organization_id),
        prepared.described("testing"),
        rego_tasks.run_tests,
        prepared.sources,
        prepared.context,
    )
    return report.to_dict()
