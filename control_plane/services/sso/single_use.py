"""Single-use values in the key-value store (OIDC state, pending SAML requests, link codes,
seen assertions) and the code that hands a finished SSO login to the UI without putting
tokens in a URL. Keys are stored as digests."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from typing import Any

from control_plane.errors import Unauthenticated
from control_plane.services.kv import KeyValueStore

CODE_TTL = 60  # seconds the UI has to trade an SSO code for tokens
STATE_TTL = 600  # seconds a user has to finish at the IdP


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def remember(
    kv: KeyValueStore, kind: str, key: str, record: dict[str, Any], ttl: int
) -> None:
    await kv.set(f"sso:{kind}:{_digest(key)}", json.dumps(record), ttl=ttl)


async def peek(kv: KeyValueStore, kind: str, key: str) -> dict[str, Any] | None:
    """The record stored under `key`, left in place."""
    raw = await kv.get(f"sso:{kind}:{_digest(key)}")
    return json.loads(raw) if raw else None


async def take(kv: KeyValueStore, kind: str, key: str) -> dict[str, Any] | None:
    """The record stored under `key`, removed atomically: a second take finds nothing."""
    raw = await kv.pop(f"sso:{kind}:{_digest(key)}")
    return json.loads(raw) if raw else None


async def first_sighting(kv: KeyValueStore, kind: str, key: str, ttl: int) -> bool:
    """True only the first time `key` is seen within `ttl` seconds (atomic on Redis)."""
    return await kv.incr(f"sso:{kind}:{_digest(key)}", ttl=max(1, ttl)) == 1


async def issue_code(
    kv: KeyValueStore, user_id: uuid.UUID, organization_id: uuid.UUID, provider_id: uuid.UUID
) -> str:
    code = secrets.token_urlsafe(32)
    record = {"user": str(user_id), "org": str(organization_id), "provider": str(provider_id)}
    await remember(kv, "code", code, record, CODE_TTL)
    return code


async def redeem_code(kv: KeyValueStore, code: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """(user, organisation, provider) of a single-use code; the code is gone afterwards."""
    record = await take(kv, "code", code)
    if record is None:
        raise Unauthenticated("the SSO code is invalid, expired or already used")
    return uuid.UUID(record["user"]), uuid.UUID(record["org"]), uuid.UUID(record["provider"])
