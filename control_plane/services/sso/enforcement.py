"""Enforced SSO: the organisation's SSO settings, and the password login they refuse (all but
the break-glass owners)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Membership, SsoProvider, SsoSettings
from control_plane.db.session import Database
from control_plane.errors import Forbidden
from control_plane.schemas import sso as schemas
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.sso.validation import invalid


async def settings_row(session: AsyncSession) -> SsoSettings | None:
    return await session.scalar(select(SsoSettings))


async def get_settings(session: AsyncSession) -> schemas.SsoSettingsOut:
    row = await settings_row(session)
    if row is None:
        return schemas.SsoSettingsOut(sso_required=False, break_glass_user_ids=[])
    return schemas.SsoSettingsOut(
        sso_required=row.sso_required,
        break_glass_user_ids=[uuid.UUID(u) for u in row.break_glass_user_ids],
    )


async def put_settings(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    body: schemas.SsoSettingsUpdate,
) -> schemas.SsoSettingsOut:
    if body.sso_required and not await session.scalar(
        select(SsoProvider.id).where(SsoProvider.enabled.is_(True))
    ):
        raise invalid("sso_required", "configure and enable an SSO provider first")
    ids = sorted({str(u) for u in body.break_glass_user_ids})
    if ids:
        owners = set(
            str(u)
            for u in await session.scalars(
                select(Membership.user_id).where(
                    Membership.user_id.in_([uuid.UUID(i) for i in ids]), Membership.role == "owner"
                )
            )
        )
        if missing := [i for i in ids if i not in owners]:
            raise invalid(
                "break_glass_user_ids", f"not owners of this organisation: {', '.join(missing)}"
            )
    before = await get_settings(session)
    row = await settings_row(session)
    if row is None:
        row = SsoSettings(sso_required=False, break_glass_user_ids=[], updated_at=utcnow())
        session.add(row)
    row.sso_required = body.sso_required
    row.break_glass_user_ids = ids
    row.updated_at = utcnow()
    await session.flush()
    after = await get_settings(session)
    await audit.record(
        session,
        organization_id,
        actor,
        "sso.settings.update",
        "organization",
        organization_id,
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after


async def check_password_login(
    db: Database, user_id: uuid.UUID, organization_id: uuid.UUID
) -> None:
    """Refuse a password login to an organisation that requires SSO (break-glass owners pass)."""
    async with db.session(organization_id) as session:
        row = await settings_row(session)
    if row is None or not row.sso_required or str(user_id) in row.break_glass_user_ids:
        return
    raise Forbidden(
        "this organisation requires single sign-on (SSO): log in through your identity "
        "provider (GET /api/v1/auth/sso/discover?email=…)",
        details=[{"field": "password", "message": "password login is disabled by SSO"}],
    )
