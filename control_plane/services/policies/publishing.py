"""Publishing, rolling back and re-signing: signed bundle revisions.

A publish or rollback is three steps: `prepare` (a short transaction reads the set),
`build` (the sandbox compiles it and runs its tests, no transaction open), `commit` (a
second transaction locks the organisation, checks nothing changed meanwhile, signs and
writes). A refusal at any step happens before the only write, so nothing is published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.locks import lock_organization
from control_plane.db.models import BundleRevision, Policy
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Invalid
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.plans import bundle as plan_bundle
from control_plane.services.policies.evaluation import Prepared, compile_context, prepare
from control_plane.services.policies.revisions import current_revision, released_under_key
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.rego_tasks import compile_and_test
from policy.bundles.bundle import build_bundle
from policy.compile.compiler import CompileContext, CompiledPolicy
from policy.compile.testrunner import PolicyTestReport
from policy.errors import BundleError


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
    idempotency_key: str | None = None,
) -> BundleRevision:
    # One publisher at a time per organisation: revisions must strictly increase.
    await lock_organization(session, organization_id)
    if idempotency_key is not None:
        # Under the lock: a repeat that raced the first attempt finds what it stored.
        earlier = await released_under_key(session, organization_id, idempotency_key, reason=reason)
        if earlier is not None:
            return earlier
    if _canonical(await compile_context(session, organization_id, keys)) != _canonical(
        prepared.context
    ):
        # An API key, deployment or signing key changed while the set was being built.
        raise Conflict(
            "credentials or deployments changed while the policies were being built; "
            f"nothing was published; {reason} again"
        )
    plan = await plan_bundle.plan_source(session)
    if [s for s in prepared.sources if s[0] == plan_bundle.SOURCE_FILE] != ([plan] if plan else []):
        raise Conflict(
            f"the organisation's plan changed while the policies were being built; nothing was "
            f"published; {reason} again"
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
        **({"idempotency_key": idempotency_key} if idempotency_key is not None else {}),
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
    idempotency_key: str | None = None,
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
        idempotency_key=idempotency_key,
    )


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
    idempotency_key: str | None = None,
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
        idempotency_key=idempotency_key,
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
