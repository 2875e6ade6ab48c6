"""The organisation's newest signed bundle, verified as a sidecar of its scope loads it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from control_plane.db.models import BundleRevision
from policy.bundles.bundle import VerifiedBundle, load_bundle
from tests.conftest import Stack


async def newest_bundle(stack: Stack, organization_id: str) -> tuple[int, VerifiedBundle]:
    org = uuid.UUID(organization_id)
    async with stack.db.session(org) as session:
        row = await session.scalar(
            select(BundleRevision).order_by(BundleRevision.revision.desc()).limit(1)
        )
    assert row is not None, "no bundle published"
    jwks = await stack.app.state.keys.organization_jwks(org)
    return row.revision, load_bundle(row.bundle, jwks, scope=organization_id)
