"""Tenant policies: drafts by name with versions, simulation, tests, signed bundle revisions.

A policy is one document (RolePolicy, RegoPolicy, BudgetPolicy, PolicyTest) named by its
`metadata.name`. Writing a source creates or updates drafts; publishing validates the whole
draft set, runs its PolicyTests, compiles and signs a bundle revision, and only then marks
the versions published. Anything that fails leaves the published set and bundle untouched.
Parsing, compiling and evaluating a tenant's Rego run in the Rego sandbox's worker processes
(rego_sandbox.py), under its time and memory limits; only signing stays here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import ApiKey, BundleRevision, Organization, Policy, PolicyVersion
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, deployments, rego_tasks
from control_plane.services import sessions as user_sessions
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.pagination import paginate
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.rego_tasks import compile_and_test
from policy.bundle import build_bundle
from policy.compiler import CompileContext, CompiledPolicy
from policy.errors import BundleError
from policy.models import Budget
from policy.testrunner import PolicyTestReport


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def status(policy: Policy) -> str:
    if policy.deleted_at is not None:
        return "deleted"
    return "published" if policy.published_version == policy.latest_version else "draft"


# -- reading -------------------------------------------------------------------------------


async def _policy(session: AsyncSession, policy_id: uuid.UUID) -> Policy:
    policy = await session.get(Policy, policy_id)
    if policy is None:
        raise NotFound("no such policy")
    return policy


async def _version(session: AsyncSession, policy: Policy, version: int) -> PolicyVersion:
    row = await session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.policy_id == policy.id, PolicyVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"policy {policy.name} has no version {version}")
    return row


async def latest_source(session: AsyncSession, policy: Policy) -> str | None:
    if policy.deleted_at is not None:
        return None
    return (await _version(session, policy, policy.latest_version)).source


async def list_policies(
    session: AsyncSession, cursor: str | None, limit: int, *, include_deleted: bool = False
) -> tuple[list[Policy], str | None]:
    query = select(Policy)
    if not include_deleted:
        query = query.where(Policy.deleted_at.is_(None))
    rows, next_cursor = await paginate(session, query, Policy, cursor, limit)
    return list(rows), next_cursor


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> Policy:
    return await _policy(session, policy_id)


async def list_versions(
    session: AsyncSession, policy_id: uuid.UUID
) -> tuple[Policy, list[PolicyVersion]]:
    policy = await _policy(session, policy_id)
    rows = await session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy.id)
        .order_by(PolicyVersion.version.desc())
    )
    return policy, list(rows)


async def get_version(
    session: AsyncSession, policy_id: uuid.UUID, version: int
) -> tuple[Policy, PolicyVersion]:
    policy = await _policy(session, policy_id)
    return policy, await _version(session, policy, version)


async def diff(
    session: AsyncSession, policy_id: uuid.UUID, from_version: int, to_version: int
) -> str:
    policy = await _policy(session, policy_id)
    old = await _version(session, policy, from_version)
    new = await _version(session, policy, to_version)
    return "".join(
        difflib.unified_diff(
            old.source.splitlines(keepends=True),
            new.source.splitlines(keepends=True),
            fromfile=f"{policy.name}@{from_version}",
            tofile=f"{policy.name}@{to_version}",
        )
    )


async def _sources(session: AsyncSession, versions: Mapping[str, int]) -> list[tuple[str, str]]:
    """`(name, text)` for the given name -> version map, in name order."""
    if not versions:
        return []
    rows = await session.execute(
        select(Policy.name, PolicyVersion.version, PolicyVersion.source)
        .join(PolicyVersion, PolicyVersion.policy_id == Policy.id)
        .where(Policy.name.in_(list(versions)))
    )
    found = {(name, version): source for name, version, source in rows}
    missing = [n for n, v in versions.items() if (n, v) not in found]
    if missing:
        raise NotFound(f"policy versions no longer exist: {', '.join(sorted(missing))}")
    return [(name, found[(name, versions[name])]) for name in sorted(versions)]


async def draft_versions(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Policy.name, Policy.latest_version).where(Policy.deleted_at.is_(None))
    )
    return {name: version for name, version in rows}


async def current_revision(session: AsyncSession) -> BundleRevision | None:
    row: BundleRevision | None = await session.scalar(
        select(BundleRevision).order_by(BundleRevision.revision.desc()).limit(1)
    )
    return row


async def published_budgets(session: AsyncSession) -> tuple[int | None, list[Budget]]:
    """The budgets of the current bundle revision (what sidecars enforce), by name."""
    revision = await current_revision(session)
    if revision is None:
        return None, []
    sources = await _sources(session, revision.policies)
    budgets = rego_tasks.policy_set(sources).budgets
    return revision.revision, sorted(budgets, key=lambda budget: budget.name)


# -- validating and writing ----------------------------------------------------------------


def _described(action: str, names: list[str]) -> str:
    """How a refusal names what was being evaluated: the action and the policies."""
    return f"{action} policies {', '.join(names)}" if names else f"{action} the policy set"


async def validate(
    sandbox: RegoSandbox, organization_id: uuid.UUID, source: str
) -> list[dict[str, Any]]:
    """Every problem in `source` on its own, as 422 details would list them."""
    details: list[dict[str, Any]] = await sandbox.run(
        str(organization_id), "validating the source", rego_tasks.validate, source
    )
    return details


@dataclass(frozen=True)
class Applied:
    policies: list[Policy]
    created: list[str]
    updated: list[str]
    unchanged: list[str]


async def parse(sandbox: RegoSandbox, organization_id: uuid.UUID, source: str) -> list[Any]:
    """The documents of `source` (parsing compiles their Rego, so in the sandbox)."""
    documents: list[Any] = await sandbox.run(
        str(organization_id), "parsing the source", rego_tasks.parse, source
    )
    if not documents:
        raise Invalid("the source holds no policy document", details=[{"field": "source"}])
    return documents


@dataclass(frozen=True)
class Drafts:
    """The drafts a change was checked against (`versions`) and the set it would leave."""

    versions: dict[str, int]
    sources: list[tuple[str, str]]


async def check(sandbox: RegoSandbox, organization_id: uuid.UUID, drafts: Drafts) -> None:
    """The drafts must still form a valid set after the change (checked in the sandbox,
    with no transaction open)."""
    await sandbox.run(
        str(organization_id),
        _described("checking", [name for name, _ in drafts.sources]),
        rego_tasks.check_set,
        drafts.sources,
    )


def _unchanged(checked: Drafts, now: dict[str, int]) -> None:
    if checked.versions != now:
        raise Conflict(
            "the drafts changed while this change was being checked; nothing was saved; try again",
            details=[{"checked": checked.versions, "drafts": now}],
        )


async def applied_drafts(session: AsyncSession, documents: list[Any]) -> Drafts:
    """The drafts with `documents` in place; a 409 if a name changes kind."""
    existing = {p.name: p for p in await session.scalars(select(Policy))}
    versions = await draft_versions(session)
    merged = dict(await _sources(session, versions))
    for document in documents:
        current = existing.get(document.name)
        if current is not None and current.deleted_at is None and current.kind != document.kind:
            raise Conflict(
                f"policy {document.name} is a {current.kind}; delete it before reusing the "
                f"name for a {document.kind}",
                details=[{"document": document.name, "field": "kind"}],
            )
        merged[document.name] = document.text or ""
    return Drafts(versions, sorted(merged.items()))


async def apply(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    documents: list[Any],
    *,
    checked: Drafts,
) -> Applied:
    """Create or update drafts from `documents`, all or nothing, if the drafts are still
    those `checked` (`applied_drafts`, then `check`) found valid with them in place."""
    _unchanged(checked, await draft_versions(session))
    existing = {p.name: p for p in await session.scalars(select(Policy))}
    drafts = dict(await _sources(session, checked.versions))
    incoming = {d.name: (d.kind, d.text or "") for d in documents}
    now = utcnow()
    result = Applied([], [], [], [])
    for name, (kind, text) in incoming.items():
        policy = existing.get(name)
        if policy is not None and policy.deleted_at is None and drafts.get(name) == text:
            result.policies.append(policy)
            result.unchanged.append(name)
            continue
        if policy is None:
            policy = Policy(name=name, kind=kind, latest_version=1, updated_at=now)
            session.add(policy)
            await session.flush()
            result.created.append(name)
        else:
            policy.latest_version += 1
            policy.kind, policy.deleted_at, policy.updated_at = kind, None, now
            result.updated.append(name)
        session.add(
            PolicyVersion(
                policy_id=policy.id,
                version=policy.latest_version,
                source=text,
                sha256=_sha256(text),
                created_by=actor.label,
            )
        )
        result.policies.append(policy)
        await audit.record(
            session,
            organization_id,
            actor,
            "policy.create" if name in result.created else "policy.update",
            "policy",
            policy.id,
            name=name,
            kind=kind,
            version=policy.latest_version,
            sha256=_sha256(text),
        )
    await session.flush()
    return result


async def drafts_without(session: AsyncSession, policy_id: uuid.UUID) -> Drafts:
    """The drafts as they would be without the policy."""
    policy = await _policy(session, policy_id)
    if policy.deleted_at is not None:
        raise NotFound("no such policy")
    versions = await draft_versions(session)
    remaining = {name: v for name, v in versions.items() if name != policy.name}
    return Drafts(versions, await _sources(session, remaining))


async def delete(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    policy_id: uuid.UUID,
    *,
    checked: Drafts,
) -> None:
    """Remove the policy from the drafts (if they are still those `checked`); the next
    publish leaves it out of the bundle."""
    policy = await _policy(session, policy_id)
    if policy.deleted_at is not None:
        raise NotFound("no such policy")
    _unchanged(checked, await draft_versions(session))
    policy.deleted_at = policy.updated_at = utcnow()
    await audit.record(
        session, organization_id, actor, "policy.delete", "policy", policy.id, name=policy.name
    )


# -- compiling, simulating, testing --------------------------------------------------------


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
        organization_id=str(organization_id),
        api_keys=[_api_key_entry(k) for k in api_keys],
        jwks=keys.jwks(),
        agents=agents,
        pipelines=pipelines,
        revoked_sessions=await user_sessions.live_revoked_sids(session, now),
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


async def _selected(session: AsyncSession, draft: bool) -> dict[str, int]:
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
        return _described(action, [name for name, _ in self.sources])


async def prepare(
    session: AsyncSession, organization_id: uuid.UUID, keys: KeyRing, versions: dict[str, int]
) -> Prepared:
    sources = await _sources(session, versions)
    return Prepared(versions, sources, await compile_context(session, organization_id, keys))


async def prepare_selected(
    session: AsyncSession, organization_id: uuid.UUID, keys: KeyRing, *, draft: bool
) -> Prepared:
    """The drafts (or the published set), for simulate and tests."""
    return await prepare(session, organization_id, keys, await _selected(session, draft))


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


def report_dict(report: PolicyTestReport) -> dict[str, Any]:
    return {
        "passed": report.passed,
        "total": len(report.results),
        "failures": [r.to_dict() for r in report.failures],
        "report": report.format(),
    }


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
    return report_dict(report)


# -- publishing ----------------------------------------------------------------------------
#
# A publish or rollback is three steps: `prepare` (a short transaction reads the set),
# `build` (the sandbox compiles it and runs its tests, no transaction open), `commit` (a
# second transaction locks the organisation, checks nothing changed meanwhile, signs and
# writes). A refusal at any step happens before the only write, so nothing is published.


@dataclass(frozen=True)
class Built:
    compiled: CompiledPolicy
    tests: PolicyTestReport


_VERBS = {"publish": "publishing", "rollback": "rolling back to", "refresh": "re-signing"}


def _passed(built: Built) -> Built:
    if not built.tests.passed:
        failures = [r.to_dict() for r in built.tests.failures]
        raise Conflict(
            f"{len(failures)} of {len(built.tests.results)} policy test cases fail; "
            "nothing was published",
            details=failures,
        )
    return built


async def build(
    sandbox: RegoSandbox, organization_id: uuid.UUID, prepared: Prepared, *, reason: str
) -> Built:
    """Compile the prepared set and run its tests in the sandbox; failing tests are a 409."""
    compiled, report = await sandbox.run(
        str(organization_id),
        prepared.described(_VERBS.get(reason, reason)),
        compile_and_test,
        prepared.sources,
        prepared.context,
        run=True,
    )
    return _passed(Built(compiled, report))


def _sign(
    compiled: CompiledPolicy, *, revision: int, kid: str, signing_key: Any, issuer: str
) -> bytes:
    try:
        return build_bundle(
            compiled,
            revision=revision,
            signing_key=signing_key,
            kid=kid,
            scope=compiled.organization_id,
            iss=issuer,
        )
    except BundleError as exc:
        raise Invalid(f"the bundle could not be built: {exc}") from None


def _canonical(context: CompileContext) -> str:
    """The context as comparable text: the same rows read in another order compare equal."""

    def sort(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): sort(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return sorted((sort(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return json.dumps(sort(dataclasses.asdict(context)), sort_keys=True, default=str)


async def _commit(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    keys: KeyRing,
    prepared: Prepared,
    built: Built,
    *,
    reason: str,
    message: str,
    issuer: str,
) -> BundleRevision:
    # One publisher at a time per organisation: revisions must strictly increase.
    await session.execute(
        select(Organization.id).where(Organization.id == organization_id).with_for_update()
    )
    if _canonical(await compile_context(session, organization_id, keys)) != _canonical(
        prepared.context
    ):
        # An API key, deployment or signing key changed while the set was being built.
        raise Conflict(
            "credentials or deployments changed while the policies were being built; "
            f"nothing was published; {reason} again"
        )
    last = await session.scalar(select(func.max(BundleRevision.revision)))
    revision = (last or 0) + 1
    # The organisation's own key: a sidecar of this scope trusts no other organisation's.
    kid, signing_key = await keys.bundle_signer(session, organization_id)
    bundle = await asyncio.to_thread(
        _sign, built.compiled, revision=revision, kid=kid, signing_key=signing_key, issuer=issuer
    )
    row = BundleRevision(
        revision=revision,
        reason=reason,
        message=message,
        policies=prepared.versions,
        key_id=kid,
        sha256=hashlib.sha256(bundle).hexdigest(),
        size=len(bundle),
        bundle=bundle,
        created_by=actor.label,
    )
    session.add(row)
    for policy in await session.scalars(select(Policy)):
        policy.published_version = prepared.versions.get(policy.name)
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        f"bundle.{reason}",
        "bundle",
        str(revision),
        revision=revision,
        policies=prepared.versions,
        key_id=kid,
        sha256=row.sha256,
        tests=len(built.tests.results),
        message=message,
    )
    return row


async def publish(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    keys: KeyRing,
    prepared: Prepared,
    built: Built,
    *,
    versions: dict[str, int],
    message: str,
    issuer: str,
) -> BundleRevision:
    """Publish the built set, if `versions` (what the publish gate clears now) are still
    exactly the versions that were built and tested."""
    if versions != prepared.versions:
        raise Conflict(
            "the drafts changed while they were being published; nothing was published; "
            "publish again",
            details=[{"built": prepared.versions, "drafts": versions}],
        )
    return await _commit(
        session,
        organization_id,
        actor,
        keys,
        prepared,
        built,
        reason="publish",
        message=message,
        issuer=issuer,
    )


async def revision_versions(session: AsyncSession, revision: int) -> dict[str, int]:
    target = await session.scalar(select(BundleRevision).where(BundleRevision.revision == revision))
    if target is None:
        raise NotFound(f"no bundle revision {revision}")
    return dict(target.policies)


async def rollback(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    keys: KeyRing,
    prepared: Prepared,
    built: Built,
    *,
    revision: int,
    message: str,
    issuer: str,
) -> BundleRevision:
    """Publish again what `revision` held (as built), as a new revision; drafts are kept."""
    return await _commit(
        session,
        organization_id,
        actor,
        keys,
        prepared,
        built,
        reason="rollback",
        message=message or f"rollback to revision {revision}",
        issuer=issuer,
    )


async def refresh(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    keys: KeyRing,
    *,
    why: str,
    issuer: str,
) -> BundleRevision | None:
    """Re-sign the published policies with current credentials (after an API key or
    signing-key change), so sidecars stop accepting what the control plane no longer does.

    The one compile outside the sandbox, inside the caller's transaction (which must commit
    the credential change and the bundle together): it evaluates nothing (no tests) and the
    set is one the sandbox already accepted when it was published."""
    current = await current_revision(session)
    if current is None:
        return None
    prepared = await prepare(session, organization_id, keys, dict(current.policies))
    compiled, report = await asyncio.to_thread(
        compile_and_test, prepared.sources, prepared.context, run=False
    )
    return await _commit(
        session,
        organization_id,
        actor,
        keys,
        prepared,
        Built(compiled, report),
        reason="refresh",
        message=why,
        issuer=issuer,
    )


async def list_revisions(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[BundleRevision], str | None]:
    rows, next_cursor = await paginate(
        session, select(BundleRevision), BundleRevision, cursor, limit
    )
    return list(rows), next_cursor


async def refresh_everywhere(
    db: Database, keys: KeyRing, *, why: str, issuer: str
) -> list[tuple[uuid.UUID, int]]:
    """Re-sign every organisation's published bundle (after the key ring changed, so each
    bundle is signed by its organisation's current key and the JWKS inside it holds the key
    new access tokens are signed with)."""
    async with db.session(SYSTEM) as session:
        organizations = list(
            await session.scalars(select(BundleRevision.organization_id).distinct())
        )
    actor = Actor("system", None, "kaizen-studio", None, None)
    refreshed = []
    for organization_id in organizations:
        async with db.session(organization_id) as session:
            row = await refresh(session, organization_id, actor, keys, why=why, issuer=issuer)
        if row is not None:
            refreshed.append((organization_id, row.revision))
    return refreshed


async def resign_with_organization_keys(
    db: Database, keys: KeyRing, *, issuer: str
) -> list[tuple[uuid.UUID, int]]:
    """Re-sign each organisation whose current bundle is not signed by one of its own keys
    (bundles published before per-organisation keys): a sidecar of that scope trusts only
    the organisation's keys, so without this a fresh one could not load the bundle."""
    async with db.session(SYSTEM) as session:
        organizations = list(
            await session.scalars(select(BundleRevision.organization_id).distinct())
        )
    actor = Actor("system", None, "kaizen-studio", None, None)
    resigned = []
    for organization_id in organizations:
        own = {jwk["kid"] for jwk in (await keys.organization_jwks(organization_id))["keys"]}
        async with db.session(organization_id) as session:
            current = await current_revision(session)
            if current is None or current.key_id in own:
                continue
            row = await refresh(
                session,
                organization_id,
                actor,
                keys,
                why="signed with the organisation's own bundle key",
                issuer=issuer,
            )
        if row is not None:
            resigned.append((organization_id, row.revision))
    return resigned
