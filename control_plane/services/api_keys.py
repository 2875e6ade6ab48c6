"""API keys: `ks_` secrets shown once, stored as SHA-256, scoped, expirable, revocable.

A key never carries more than its creator could do: its role must sit within the
creator's, and scopes only narrow it further.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import ApiKey
from control_plane.errors import Conflict, Forbidden, Invalid, NotFound
from control_plane.schemas import identity as schemas
from control_plane.services import audit, roles
from control_plane.services.audit import Actor
from control_plane.services.auth import new_api_key, sha256_hex
from control_plane.services.pagination import paginate
from control_plane.services.principal import Principal


async def _key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("no such API key")
    return key


async def list_keys(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[ApiKey], str | None]:
    rows, next_cursor = await paginate(session, select(ApiKey), ApiKey, cursor, limit)
    return list(rows), next_cursor


async def get_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    return await _key(session, key_id)


async def create_key(
    session: AsyncSession, principal: Principal, actor: Actor, body: schemas.ApiKeyCreate
) -> schemas.ApiKeyCreated:
    if not roles.role_within(body.role, principal.role):
        raise Forbidden(
            f"a {principal.role} cannot create a key with role {body.role!r}",
            details=[{"field": "role"}],
        )
    if principal.scopes:
        wider = [s for s in body.scopes or ["*:*"] if s not in principal.scopes]
        if wider:
            raise Forbidden(
                "a scoped key cannot create a key with wider scopes", details=[{"field": "scopes"}]
            )
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise Invalid("expires_at is in the past", details=[{"field": "expires_at"}])
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == body.name)):
        raise Conflict(
            f"an API key named {body.name!r} already exists", details=[{"field": "name"}]
        )
    secret = new_api_key()
    key = ApiKey(
        id=uuid.uuid4(),
        name=body.name,
        prefix=secret[:10],
        key_hash=sha256_hex(secret),
        role=body.role,
        scopes=sorted(set(body.scopes)),
        created_by=principal.id if principal.kind == "user" else None,
        expires_at=body.expires_at,
    )
    session.add(key)
    await session.flush()
    await audit.record(
        session,
        principal.organization_id,
        actor,
        "api_key.create",
        "api_key",
        key.id,
        after={"name": key.name, "role": key.role, "scopes": key.scopes, "prefix": key.prefix},
    )
    return schemas.ApiKeyCreated.model_validate({**_fields(key), "key": secret})


def _fields(key: ApiKey) -> dict[str, object]:
    return schemas.ApiKey.model_validate(key).model_dump()


async def revoke_key(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, key_id: uuid.UUID
) -> None:
    key = await _key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await audit.record(
            session, org_id, actor, "api_key.revoke", "api_key", key.id, before={"name": key.name}
        )
