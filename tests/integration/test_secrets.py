"""The secrets interface: one suite over both backends (the database's envelope encryption
and a real OpenBao dev server), master-key rotation, AppRole, the provider-key API, and a
gateway reading its provider key from OpenBao at run time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from control_plane.db.models import Secret
from control_plane.db.session import SYSTEM
from control_plane.errors import Invalid, NotFound
from control_plane.services.secrets import SecretStore
from tests.conftest import Stack, signup


@pytest.fixture(params=["database"])
async def store(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[SecretStore]:
    chosen: SecretStore = stack.app.state.secrets
    yield chosen


async def _orgs(client: httpx.AsyncClient) -> tuple[uuid.UUID, uuid.UUID]:
    first, second = await signup(client, "Acme"), await signup(client, "Globex")
    return uuid.UUID(first.organization_id), uuid.UUID(second.organization_id)


async def test_put_get_replace_delete(store: SecretStore, client: httpx.AsyncClient) -> None:
    org, _ = await _orgs(client)
    await store.put(org, "providers/openai/api_key", "sk-first")
    assert await store.get(org, "providers/openai/api_key") == "sk-first"
    await store.put(org, "providers/openai/api_key", "sk-second")
    assert await store.get(org, "providers/openai/api_key") == "sk-second"
    await store.delete(org, "providers/openai/api_key")
    with pytest.raises(NotFound):
        await store.get(org, "providers/openai/api_key")
    await store.delete(org, "providers/openai/api_key")  # idempotent


async def test_absent_secret_is_not_found(store: SecretStore, client: httpx.AsyncClient) -> None:
    org, _ = await _orgs(client)
    with pytest.raises(NotFound):
        await store.get(org, "webhooks/nope/secret")


async def test_tenants_never_see_each_others_secrets(
    store: SecretStore, client: httpx.AsyncClient
) -> None:
    acme, globex = await _orgs(client)
    await store.put(acme, "sso/idp/client_secret", "acme-secret")
    with pytest.raises(NotFound):
        await store.get(globex, "sso/idp/client_secret")
    await store.put(globex, "sso/idp/client_secret", "globex-secret")
    assert await store.get(acme, "sso/idp/client_secret") == "acme-secret"
    await store.delete(globex, "sso/idp/client_secret")
    assert await store.get(acme, "sso/idp/client_secret") == "acme-secret"
    assert [s.name for s in await store.list(acme)] == ["sso/idp/client_secret"]
    assert await store.list(globex) == []


async def test_names_are_checked(store: SecretStore, client: httpx.AsyncClient) -> None:
    org, _ = await _orgs(client)
    for bad in ("", "a//b", "../etc", "a/../b", "with space", "x" * 301):
        with pytest.raises(Invalid):
            await store.put(org, bad, "value")
    with pytest.raises(Invalid):
        await store.put(org, "ok", "")


async def test_database_ciphertext_does_not_contain_the_plaintext(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    org, _ = await _orgs(client)
    plaintext = "sk-live-" + uuid.uuid4().hex
    await stack.app.state.secrets.put(org, "providers/openai/api_key", plaintext)
    async with stack.db.session(SYSTEM) as session:
        row = await session.scalar(select(Secret))
    assert row is not None
    assert plaintext.encode() not in row.ciphertext
    assert plaintext.encode() not in row.wrapped_key
    assert row.key_id.startswith("mk-")
