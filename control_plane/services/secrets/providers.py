"""Provider credentials: the API's write-only face of the secrets store."""

from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import NotFound
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.secrets.store import SecretInfo, SecretStore, check_name

log = logging.getLogger(__name__)

# -- provider credentials (the API's write-only face) ------------------------------------------

PROVIDER_KEY = "providers/{provider}/api_key"
PROVIDER_HOST = "providers/{provider}/host"  # the host the key is bound to (not secret)


def provider_secret_name(provider: str) -> str:
    return PROVIDER_KEY.format(provider=check_name(provider, "provider"))


async def put_provider_key(
    store: SecretStore,
    session: AsyncSession,
    organization_id: UUID,
    actor: Actor,
    provider: str,
    api_key: str,
    host: str,
) -> tuple[SecretInfo, bool]:
    """Create or replace the provider's API key, bound to `host` (the only host gateways
    send it to, services/provider_hosts.py); answers what may be shown and whether it is
    new. The audit event names the provider and the host, never the key."""
    name = provider_secret_name(provider)
    existed = any(i.name == name for i in await store.list(organization_id, name, session=session))
    # Audit first: should the store refuse (Vault down), the event rolls back with it.
    await audit.record(
        session,
        organization_id,
        actor,
        "secret.replace" if existed else "secret.create",
        "secret",
        name,
        provider=provider,
        host=host,
    )
    await store.put(organization_id, name, api_key, session=session)
    await store.put(organization_id, PROVIDER_HOST.format(provider=provider), host, session=session)
    (info,) = [
        i for i in await store.list(organization_id, name, session=session) if i.name == name
    ]
    return info, not existed


async def delete_provider_key(
    store: SecretStore, session: AsyncSession, organization_id: UUID, actor: Actor, provider: str
) -> None:
    name = provider_secret_name(provider)
    if not any(i.name == name for i in await store.list(organization_id, name, session=session)):
        raise NotFound(f"no API key stored for provider {provider!r}")
    await audit.record(
        session, organization_id, actor, "secret.delete", "secret", name, provider=provider
    )
    await store.delete(organization_id, name, session=session)
    await store.delete(organization_id, PROVIDER_HOST.format(provider=provider), session=session)
