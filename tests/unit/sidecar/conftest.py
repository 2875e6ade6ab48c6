"""Fixtures: one signing key, a verified bundle and an Authorizer over it (in-process parts)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import InMemoryReservationBook
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from policy.bundles.bundle import VerifiedBundle, load_bundle
from policy.bundles.gateway_binding import binding_of_credential
from policy.engine.budgets import InMemoryBudgetLedger
from tests.unit.sidecar.factory import (
    AUDIENCE,
    GATEWAY_TOKEN,
    ISSUER,
    ORG,
    Keys,
    make_bundle,
    make_keys,
)

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def keys() -> Keys:
    return make_keys()


@pytest.fixture(scope="session")
def verified(keys: Keys) -> VerifiedBundle:
    return load_bundle(make_bundle(keys), keys.jwks, scope=ORG)


@pytest.fixture
def holder(verified: VerifiedBundle) -> EngineHolder:
    holder = EngineHolder(
        InMemoryBudgetLedger(),
        issuer=ISSUER,
        audience=AUDIENCE,
        gateway_binding=binding_of_credential(GATEWAY_TOKEN),
    )
    holder.on_bundle(verified)
    return holder


@pytest.fixture
def authorizer(holder: EngineHolder) -> Authorizer:
    return Authorizer(
        holder,
        replay_guard=InMemoryReplayGuard(),
        reservations=InMemoryReservationBook(),
        decision_key=b"k" * 32,
    )


@pytest.fixture
def redis_prefix() -> str:
    return f"kaizen-test-sidecar-{secrets.token_hex(4)}:"


@pytest.fixture
def sync_redis(redis_prefix: str) -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    yield client
    keys = list(client.scan_iter(f"{redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def async_redis(sync_redis: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()
