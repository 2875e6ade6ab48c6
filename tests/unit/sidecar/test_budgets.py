"""The Redis budget ledger (real Redis) and settling reservations from any worker."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import (
    InMemoryReservationBook,
    RedisBudgetLedger,
    RedisReservationBook,
    window_ttl,
)
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.mapping import HttpFacts
from policy.bundles.bundle import VerifiedBundle
from policy.engine.budgets import BudgetKey, period_window
from tests.unit.sidecar.conftest import REDIS_URL
from tests.unit.sidecar.factory import API_KEY, AUDIENCE, ISSUER, ORG, Keys, access_token

KEY = BudgetKey(ORG, "team:research", "cost_usd", "month:2026-11")
CI = "/v1/agents/builder/invoke"


def ci_call() -> HttpFacts:
    return HttpFacts("POST", CI, {"authorization": f"Bearer {API_KEY}"})


@pytest.fixture
async def workers(
    verified: VerifiedBundle, redis_prefix: str, sync_redis: redis.Redis
) -> AsyncIterator[list[Authorizer]]:
    """Two workers' views: each its own Redis clients and engine, the shared Redis."""
    ledgers = [RedisBudgetLedger.from_url(REDIS_URL, redis_prefix) for _ in range(2)]
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(2)]
    authorizers = []
    for ledger, client in zip(ledgers, clients, strict=True):
        holder = EngineHolder(ledger, issuer=ISSUER, audience=AUDIENCE)
        holder.on_bundle(verified)
        authorizers.append(
            Authorizer(
                holder,
                replay_guard=InMemoryReplayGuard(),
                reservations=RedisReservationBook(client, redis_prefix),
            )
        )
    yield authorizers
    for authorizer in authorizers:
        await authorizer.drain()
    for ledger, client in zip(ledgers, clients, strict=True):
        ledger.client.close()
        await client.aclose()


def test_reserve_release_settle_and_expiry(sync_redis: redis.Redis, redis_prefix: str) -> None:
    ledger = RedisBudgetLedger(sync_redis, redis_prefix)
    assert ledger.reserve(KEY, 2.5) == 2.5
    assert ledger.reserve(KEY, 1.0) == 3.5
    ledger.settle(KEY, reserved=1.0, actual=0.25)
    ledger.release(KEY, 2.5)
    assert ledger.usage(KEY) == pytest.approx(0.25)
    ttl = sync_redis.ttl(redis_prefix + KEY.redis_key)
    assert 31 * 86_400 < ttl <= window_ttl(KEY.window)


def test_concurrent_reservations_are_atomic(sync_redis: redis.Redis, redis_prefix: str) -> None:
    ledgers = [RedisBudgetLedger.from_url(REDIS_URL, redis_prefix) for _ in range(4)]

    def spend(ledger: RedisBudgetLedger) -> None:
        for _ in range(50):
            ledger.reserve(KEY, 1.0)

    threads = [threading.Thread(target=spend, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledgers[0].usage(KEY) == 200.0
    for ledger in ledgers:
        ledger.client.close()


async def test_budget_limit_is_shared_and_settled_from_another_worker(
    sync_redis: redis.Redis, redis_prefix: str, workers: list[Authorizer]
) -> None:
    one, two = workers
    first = await one.check(ci_call())
    second = await two.check(ci_call())
    assert (first.status, second.status) == (200, 200)
    # Worker two settles worker one's call: it did not execute after all.
    assert await two.settle(first.decision_id, {"executions": 0}) == 1
    assert await two.settle(first.decision_id, {"executions": 0}) == 0  # settled once
    assert [(await one.check(ci_call())).status for _ in range(3)] == [200, 200, 403]
    over = await two.check(ci_call())
    assert over.status == 403
    assert over.reasons == (
        "budget ci-daily (apikey:ci-bot executions per day) exceeded: 4 of limit 3",
    )
    window = period_window("day", datetime.now(UTC))
    used = sync_redis.get(
        f"{redis_prefix}kaizen:budget:{{{ORG}}}:apikey:ci-bot:executions:{window}"
    )
    assert float(used or 0) == 3.0  # denied calls gave their reservation back


async def test_unreachable_redis_denies_budgeted_callers_only(
    verified: VerifiedBundle, keys: Keys
) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    holder = EngineHolder(RedisBudgetLedger(dead), issuer=ISSUER, audience=AUDIENCE)
    holder.on_bundle(verified)
    authorizer = Authorizer(
        holder, replay_guard=InMemoryReplayGuard(), reservations=InMemoryReservationBook()
    )
    verdict = await authorizer.check(ci_call())
    assert (verdict.status, verdict.outcome) == (403, "deny")
    assert verdict.reasons[0].startswith("budgets could not be checked")
    assert "Redis budget store is unreachable" in verdict.reasons[0]
    alice = HttpFacts("POST", CI, {"authorization": f"Bearer {access_token(keys)}"})
    assert (await authorizer.check(alice)).status == 200  # no budget applies to alice
    dead.close()


async def test_in_memory_reservation_book_forgets_after_take() -> None:
    book = InMemoryReservationBook(ttl_seconds=60)
    book.remember("org-1", "d1", [])
    assert await book.take("org-1", "d1") == []
    assert await book.take("org-1", "d1") is None
