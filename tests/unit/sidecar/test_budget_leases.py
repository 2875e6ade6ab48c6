"""Budget leases (authz_sidecar/budget_leases.py, ADR 0015) against a real Redis.

A worker serves reservations from a lease without waiting for Redis. What must hold: many
workers racing for one budget never pass its limit; usage (the counter less what is
leased) is what calls used; near the limit, under a lowered limit and with Redis gone,
decisions are exactly what they are without leases; a lease is given back when idle and
on shutdown; and a leased call's reservation record lets any worker settle it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budget_leases import LeasedBudgets
from authz_sidecar.budgets import (
    LedgerUnavailableError,
    RedisBudgetBatch,
    RedisBudgetLedger,
    RedisReservationBook,
    reservation_key,
)
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.mapping import HttpFacts
from authz_sidecar.redis_batch import NO_RETRY
from policy.bundles.bundle import load_bundle
from policy.engine.budgets import BudgetKey, period_window
from tests.unit.sidecar.conftest import REDIS_URL
from tests.unit.sidecar.factory import API_KEY, AUDIENCE, ISSUER, ORG, Keys, make_bundle

KEY = BudgetKey(ORG, "org", "executions", period_window("day", datetime.now(UTC)))


def usage(client: redis.Redis, prefix: str, key: BudgetKey = KEY) -> tuple[float, float]:
    """(the counter, what is leased of it)."""
    total, leased = client.mget(prefix + key.redis_key, prefix + key.leased_key)
    return float(total or 0.0), float(leased or 0.0)


@pytest.fixture
async def workers(redis_prefix: str, sync_redis: redis.Redis) -> AsyncIterator[list[LeasedBudgets]]:
    """Six workers' leases on one Redis, each with its own connection."""
    clients = [aioredis.Redis.from_url(REDIS_URL, retry=NO_RETRY) for _ in range(6)]
    leases = [LeasedBudgets(RedisBudgetBatch(c, redis_prefix), lease_calls=64) for c in clients]
    yield leases
    for client in clients:
        await client.aclose()


async def _spend(leases: LeasedBudgets, limit: float, attempts: int) -> int:
    """Reserve 1 `attempts` times as the engine does: over the limit, give it back."""
    allowed = 0
    for _ in range(attempts):
        (total,) = await leases.reserve_many([(KEY, 1.0)], None, [limit])
        if total <= limit:
            allowed += 1
        else:
            await leases.release(KEY, 1.0)
        await asyncio.sleep(0)
    return allowed


async def test_workers_racing_for_one_budget_never_pass_its_limit(
    workers: list[LeasedBudgets], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    allowed = sum(await asyncio.gather(*(_spend(w, 1000.0, 300) for w in workers)))
    assert allowed <= 1000  # 1,800 attempts for a limit of 1,000
    assert allowed >= 990  # and the budget is not wasted: leases are given back
    assert sum(w.served for w in workers) > allowed / 2  # most never waited for Redis
    for worker in workers:
        await worker.close()
    assert usage(sync_redis, redis_prefix) == (allowed, 0.0)


async def test_a_leased_reservation_is_served_here_and_usage_stays_true(
    workers: list[LeasedBudgets], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one = workers[0]
    totals = [(await one.reserve_many([(KEY, 1.0)], None, [1e6]))[0] for _ in range(11)]
    assert totals == [float(n) for n in range(1, 12)]  # what the decisions report as used
    await one.flushed()
    # One lease of 64 calls; 11 used, 53 leased: usage is the counter less the leased.
    assert usage(sync_redis, redis_prefix) == (64.0, 53.0)
    assert one.served == 10
    assert one.leased(KEY) == 53.0
    one.sweep(time.monotonic() + 60)  # idle: given back
    await one.flushed()
    assert usage(sync_redis, redis_prefix) == (11.0, 0.0)
    assert one.leased(KEY) == 0.0


async def test_near_the_limit_a_reservation_is_exact(
    workers: list[LeasedBudgets], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    # A sixteenth of a headroom of 10 covers less than one call: no lease is taken.
    one = workers[0]
    for expected in (1.0, 2.0):
        assert await one.reserve_many([(KEY, 1.0)], None, [10.0]) == [expected]
    assert usage(sync_redis, redis_prefix) == (2.0, 0.0)
    assert one.served == 0


async def test_a_lowered_limit_gives_the_lease_back(
    workers: list[LeasedBudgets], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one = workers[0]
    await one.reserve_many([(KEY, 1.0)], None, [1e6])  # a lease of 64
    # A new bundle: the limit is 5 now. The lease is not used for it, and goes back.
    assert await one.reserve_many([(KEY, 1.0)], None, [5.0]) == [2.0]
    await one.flushed()
    assert usage(sync_redis, redis_prefix) == (2.0, 0.0)


async def test_shutdown_gives_every_lease_back(
    workers: list[LeasedBudgets], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    for worker in workers[:3]:
        await worker.reserve_many([(KEY, 1.0)], None, [1e6])
        await worker.close()
    assert usage(sync_redis, redis_prefix) == (3.0, 0.0)


async def test_without_redis_a_call_that_needs_a_lease_is_denied() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=NO_RETRY)
    leases = LeasedBudgets(RedisBudgetBatch(dead))
    with pytest.raises(LedgerUnavailableError):
        await leases.reserve_many([(KEY, 1.0)], None, [1e6])
    assert leases.leased(KEY) == 0.0
    await dead.aclose()


ROLES = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: caller
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "apikey:ci-bot", role: caller}
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
"""
ANY = "    - {name: anything, scope: org, metric: executions, limit: 1000000, period: day}\n"
SPEND = ROLES + ANY
SHARED_COUNTER = ROLES + (
    "    - {name: invokes, scope: org, metric: executions, limit: 5, period: day,"
    " actions: [invoke]}\n" + ANY
)
CALL = HttpFacts("POST", "/v1/agents/builder/invoke", {"authorization": f"Bearer {API_KEY}"})


@dataclass
class Worker:
    """A sidecar worker's decision path on the shared Redis, its budgets from leases."""

    authorizer: Authorizer
    leases: LeasedBudgets
    ledger: RedisBudgetLedger
    client: aioredis.Redis

    @classmethod
    def on(cls, keys: Keys, policy: str, prefix: str) -> Worker:
        ledger = RedisBudgetLedger.from_url(REDIS_URL, prefix)
        client = aioredis.Redis.from_url(REDIS_URL)
        holder = EngineHolder(ledger, issuer=ISSUER, audience=AUDIENCE)
        holder.on_bundle(load_bundle(make_bundle(keys, policy=policy), keys.jwks, scope=ORG))
        leases = LeasedBudgets(RedisBudgetBatch(client, prefix))
        reservations = RedisReservationBook(client, prefix)
        authorizer = Authorizer(
            holder, replay_guard=InMemoryReplayGuard(), reservations=reservations, budgets=leases
        )
        return cls(authorizer, leases, ledger, client)

    async def stop(self) -> None:
        await self.leases.close()
        self.ledger.client.close()
        await self.client.aclose()


async def test_a_leased_call_is_settled_by_another_worker(
    keys: Keys, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one, two = Worker.on(keys, SPEND, redis_prefix), Worker.on(keys, SPEND, redis_prefix)
    verdicts = [await one.authorizer.check(CALL) for _ in range(5)]
    assert [v.status for v in verdicts] == [200] * 5
    await one.authorizer.drain()
    assert one.ledger.usage(KEY) == 5.0  # the status report's figure
    # The second worker settles a leased call (it used nothing): usage moves by one.
    assert await two.authorizer.settle(verdicts[0].decision_id, {"executions": 0}) == 1
    assert two.ledger.usage(KEY) == 4.0
    await one.stop()
    await two.stop()
    assert usage(sync_redis, redis_prefix) == (4.0, 0.0)


async def test_another_worker_settles_a_leased_call_whose_record_is_still_lingering(
    keys: Keys, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one, two = Worker.on(keys, SPEND, redis_prefix), Worker.on(keys, SPEND, redis_prefix)
    first = await one.authorizer.check(CALL)  # takes the lease: its record went with it
    second = await one.authorizer.check(CALL)  # served from the lease: its record lingers
    assert (first.status, second.status) == (200, 200)
    assert sync_redis.exists(reservation_key(redis_prefix, ORG, second.decision_id)) == 0
    # The gateway may settle at once, on another worker: it looks again and finds it.
    assert await two.authorizer.settle(second.decision_id, {"executions": 0}) == 1
    assert await two.authorizer.settle(second.decision_id, {"executions": 0}) == 0  # once
    await one.stop()
    await two.stop()
    assert usage(sync_redis, redis_prefix) == (1.0, 0.0)


async def test_a_counter_two_budgets_share_is_never_leased(
    keys: Keys, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    """Two budgets on one counter: a lease taken under the million could spend the five's
    headroom without asking Redis. Their reservations stay exact: each call counts twice
    (once per budget) and the third call passes the five."""
    worker = Worker.on(keys, SHARED_COUNTER, redis_prefix)
    verdicts = [await worker.authorizer.check(CALL) for _ in range(4)]
    await worker.authorizer.drain()
    assert [v.status for v in verdicts] == [200, 200, 403, 403]
    assert "invokes" in verdicts[2].reasons[0]
    assert worker.leases.served == 0
    assert usage(sync_redis, redis_prefix) == (4.0, 0.0)  # two allowed calls, twice each
    await worker.stop()


async def test_a_lease_topped_up_under_a_raised_limit_goes_back_when_it_is_lowered(
    sync_redis: redis.Redis, redis_prefix: str
) -> None:
    client = aioredis.Redis.from_url(REDIS_URL, retry=NO_RETRY)
    one = LeasedBudgets(RedisBudgetBatch(client, redis_prefix), lease_calls=4)
    for _ in range(4):  # a lease of 4 under a limit of 1,000: one call waits, three do not
        await one.reserve_many([(KEY, 1.0)], None, [1_000.0])
    assert one.leased(KEY) == 0.0
    await one.reserve_many([(KEY, 1.0)], None, [1e6])  # a new bundle: topped up under it
    assert one.leased(KEY) == 3.0
    # Lowered to 1,000 again: that lease was taken under the million, so it goes back and
    # the call takes a new one under 1,000 (it is not served from the old one).
    assert await one.reserve_many([(KEY, 1.0)], None, [1_000.0]) == [6.0]
    await one.flushed()
    assert one.served == 3
    assert one.leased(KEY) == 3.0
    assert usage(sync_redis, redis_prefix) == (9.0, 3.0)  # six used, three leased
    await client.aclose()
