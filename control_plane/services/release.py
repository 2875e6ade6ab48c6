"""Releasing a bundle revision: one service call per route (publish, rollback).

A release runs in three steps, so that no transaction is held while tenant Rego compiles
and its tests run (that happens in the sandbox's worker processes, with a time limit):

1. in one transaction: the publish gate checked without recording it (refuse early), and
   the versions to release read and prepared (`policies.prepare`);
2. outside any transaction: the bundle built and its tests run (`policies.build`);
3. in a second transaction: the gate checked again (recording an accepted replay), the
   revision signed and stored (`policies.publish` / `policies.rollback`), audited.

With an `idempotency_key` (the `Idempotency-Key` header), a release that already stored a
revision under that key answers that revision instead: checked before step 1 (no build)
and again under the organisation's lock in step 3 (`policies.released_under_key`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import BundleRevision
from control_plane.services import policies, replay_gate
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.rego_sandbox import RegoSandbox

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class Release:
    """Who releases for which organisation, and what a release needs."""

    organization_id: uuid.UUID
    actor: Actor
    sessions: SessionFactory  # tenant-bound transactions
    keys: KeyRing
    sandbox: RegoSandbox
    issuer: str


async def _earlier(release: Release, key: str | None, reason: str) -> BundleRevision | None:
    if key is None:
        return None
    async with release.sessions() as session:
        return await policies.released_under_key(
            session, release.organization_id, key, reason=reason
        )


async def publish(
    release: Release,
    *,
    accept_replay: uuid.UUID | None = None,
    message: str = "",
    idempotency_key: str | None = None,
) -> BundleRevision:
    """The drafts as a new revision: validated, tested, compiled, signed, stored."""
    org = release.organization_id
    if (earlier := await _earlier(release, idempotency_key, "publish")) is not None:
        return earlier
    async with release.sessions() as session:
        versions = await replay_gate.publish_gate(
            session, org, release.actor, accept_replay=accept_replay, record=False
        )
        prepared = await policies.prepare(session, org, release.keys, versions)
    built = await policies.build(release.sandbox, org, prepared, reason="publish")
    async with release.sessions() as session:
        versions = await replay_gate.publish_gate(
            session, org, release.actor, accept_replay=accept_replay
        )
        return await policies.publish(
            session,
            org,
            release.actor,
            release.keys,
            prepared,
            built,
            versions=versions,
            message=message,
            issuer=release.issuer,
            idempotency_key=idempotency_key,
        )


async def rollback(
    release: Release, *, revision: int, message: str = "", idempotency_key: str | None = None
) -> BundleRevision:
    """What an earlier revision held, released as a new, higher revision."""
    org = release.organization_id
    if (earlier := await _earlier(release, idempotency_key, "rollback")) is not None:
        return earlier
    async with release.sessions() as session:
        versions = await policies.revision_versions(session, revision)
        prepared = await policies.prepare(session, org, release.keys, versions)
    built = await policies.build(release.sandbox, org, prepared, reason="rollback")
    async with release.sessions() as session:
        return await policies.rollback(
            session,
            org,
            release.actor,
            release.keys,
            prepared,
            built,
            revision=revision,
            message=message,
            issuer=release.issuer,
            idempotency_key=idempotency_key,
        )
