"""The decision path's performance work keeps every behaviour: two-phase decisions equal
`decide`, batched Redis reservations keep limits exact and fail closed, and the token
cache never outlives a token or its key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from authz_sidecar import authn as authn_module
from authz_sidecar.authn import AuthenticationError, Authenticator
from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import (
    InMemoryReservationBook,
    RedisBudgetBatch,
    RedisBudgetLedger,
    RedisReservationBook,
    reservation_key,
)
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.mapping import HttpFacts
from authz_sidecar.redis_batch import NO_RETRY, BatchUnavailableError, ScriptBatch
from policy.bundles.bundle import VerifiedBundle, load_bundle
from policy.engine.budgets import BudgetKey, InMemoryBudgetLedger, Reservation, period_window
from policy.engine.decide import Decision, DecisionEngine
from policy.workloads import AgentConfig, CallBudget, ModelConfig
from tests.unit.sidecar.conftest import REDIS_URL
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    AUDIENCE,
    BOB,
    ISSUER,
    ORG,
    Keys,
    access_token,
    make_bundle,
    make_keys,
)

CI = "/v1/agents/builder/invoke"
SPEND = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:alice@example.com", role: user}
    - {subject: "user:bob@example.com", role: user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    require_approval contains "deployer needs approval" if input.resource.id == "agent:deployer"
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: alice-cost, scope: "user:alice@example.com", metric: cost_usd, limit: 1,
       soft_limit: 0.5, period: day}
    - {name: alice-runs, scope: "user:alice@example.com", metric: executions, limit: 4,
       period: day}
    - {name: org-runs, scope: org, metric: executions, limit: 1000, period: month}
"""

# Deployed, so a call reserves at least their ceiling (below the estimates used here).
AGENTS = {
    name: AgentConfig(
        name, ModelConfig("demo", "demo"), budget=CallBudget(max_cost_usd_per_call=0.1)
    ).to_dict()
    for name in ("support", "deployer")
}


def ci_call() -> HttpFacts:
    return HttpFacts("POST", CI, {"authorization": f"Bearer {API_KEY}"})


def _input(principal: str, resource: str = "agent:support", cost: float = 0.2) -> dict[str, Any]:
    return {
        "principal": {"id": principal, "type": "user", "organization": ORG, "roles": []},
        "action": "invoke",
        "resource": {"type": "agent", "id": resource, "workspace": None},
        "channel": "api",
        "context": {"estimated_cost_usd": cost},
    }


def _two_phase(engine: DecisionEngine, input: dict[str, Any]) -> Decision:
    ledger = engine.ledger
    step = engine.begin(input)
    if isinstance(step, Decision):
        return step
    totals = [ledger.reserve(key, amount) for key, amount in step.needs]
    return engine.finish(step, totals, release=ledger.release)


def _summary(decision: Decision) -> tuple[Any, ...]:
    return (decision.outcome, decision.reasons, decision.matched_rules, decision.budget)


def test_two_phase_decisions_equal_decide_and_leave_the_same_usage(keys: Keys) -> None:
    verified = load_bundle(make_bundle(keys, policy=SPEND, agents=AGENTS), keys.jwks, scope=ORG)
    clock = datetime(2026, 11, 26, 12, tzinfo=UTC)
    one, two = (
        DecisionEngine.from_bundle(verified, ledger=InMemoryBudgetLedger(), clock=lambda: clock)
        for _ in range(2)
    )
    calls = [
        _input("user:alice@example.com"),  # allow, three budgets reserved
        _input("user:alice@example.com", cost=0.2),
        _input("user:alice@example.com", cost=0.2),  # over the soft limit: held, released
        _input("user:alice@example.com", cost=5),  # over the hard limit: denied, released
        _input("user:alice@example.com", "agent:deployer"),  # held by ABAC: looks only
        _input("user:bob@example.com"),  # only the org budget applies
        _input("user:carol@example.com"),  # RBAC deny: no budget touched
        {"principal": {"id": "role:admin"}, "action": "x", "resource": {"id": "agent:a"}},
        _input("user:alice@example.com"),
        _input("user:alice@example.com"),  # the fifth run: over alice-runs
    ]
    for input in calls:
        assert _summary(_two_phase(two, input)) == _summary(one.decide(input))
    day, month = period_window("day", clock), period_window("month", clock)
    for key in (
        BudgetKey(ORG, "user:alice@example.com", "cost_usd", day),
        BudgetKey(ORG, "user:alice@example.com", "executions", day),
        BudgetKey(ORG, "org", "executions", month),
    ):
        assert two.ledger.usage(key) == pytest.approx(one.ledger.usage(key))
        assert one.ledger.usage(key) > 0


def test_begin_decides_at_once_when_nothing_is_to_be_reserved(verified: VerifiedBundle) -> None:
    engine = DecisionEngine.from_bundle(verified)
    denied = engine.begin(_input(f"user:{BOB}"))
    assert isinstance(denied, Decision)
    assert denied.outcome == "deny"
    no_budget = engine.begin(
        {**_input(f"user:{ALICE}"), "principal": {"id": f"user:{ALICE}", "roles": []}}
    )
    assert isinstance(no_budget, Decision)
    assert no_budget.outcome == "allow"


def test_a_failed_reservation_denies_naming_it(keys: Keys) -> None:
    verified = load_bundle(make_bundle(keys, policy=SPEND, agents=AGENTS), keys.jwks, scope=ORG)
    engine = DecisionEngine.from_bundle(verified)
    step = engine.begin(_input("user:alice@example.com"))
    assert not isinstance(step, Decision)
    decision = engine.fail_budgets(step, ConnectionError("Redis is gone"))
    assert decision.outcome == "deny"
    assert decision.reasons == ("budgets could not be checked: ConnectionError: Redis is gone",)
    with pytest.raises(ValueError, match="3 reservations"):
        engine.finish(step, [1.0], release=lambda key, amount: None)


# -- batched Redis writes ------------------------------------------------------------------------


@pytest.fixture
async def batched(
    verified: VerifiedBundle, redis_prefix: str, sync_redis: redis.Redis
) -> AsyncIterator[list[Authorizer]]:
    """Two workers that reserve through RedisBudgetBatch, sharing one Redis."""
    authorizers, clients, ledgers = [], [], []
    for _ in range(2):
        ledger = RedisBudgetLedger.from_url(REDIS_URL, redis_prefix)
        client = aioredis.Redis.from_url(REDIS_URL)
        holder = EngineHolder(ledger, issuer=ISSUER, audience=AUDIENCE)
        holder.on_bundle(verified)
        authorizers.append(
            Authorizer(
                holder,
                replay_guard=InMemoryReplayGuard(),
                reservations=RedisReservationBook(client, redis_prefix),
                budgets=RedisBudgetBatch(client, redis_prefix),
            )
        )
        clients.append(client)
        ledgers.append(ledger)
    yield authorizers
    for authorizer in authorizers:
        await authorizer.drain()
    for ledger, client in zip(ledgers, clients, strict=True):
        ledger.client.close()
        await client.aclose()


async def test_concurrent_checks_share_round_trips_and_never_pass_the_limit(
    batched: list[Authorizer], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one, two = batched
    assert one.budgets is not None
    batch: ScriptBatch = one.budgets.script  # type: ignore[attr-defined]
    verdicts = await asyncio.gather(*(w.check(ci_call()) for w in [one, two] * 6))
    assert sorted(v.status for v in verdicts) == [200] * 3 + [403] * 9  # ci-daily: 3 a day
    # One worker's six reservations (and its releases of the denied ones) went to Redis
    # in fewer round trips than requests.
    assert batch.items >= 6
    assert batch.calls < batch.items
    denied = [v for v in verdicts if v.status == 403]
    assert all("ci-daily" in v.reasons[0] and "of limit 3" in v.reasons[0] for v in denied)
    for authorizer in batched:
        await authorizer.drain()  # the denied calls' reservations are given back
    window = period_window("day", datetime.now(UTC))
    counter = f"{redis_prefix}kaizen:budget:{{{ORG}}}:apikey:ci-bot:executions:{window}"
    assert float(sync_redis.get(counter) or 0) == 3.0
    # Each allowed call's reservation record was written in a batch: any worker settles it.
    allowed = [v for v in verdicts if v.status == 200]
    assert await two.settle(allowed[0].decision_id, {"executions": 0}) == 1
    assert float(sync_redis.get(counter) or 0) == 2.0


async def test_a_reservation_record_is_stored_with_its_reservations(
    batched: list[Authorizer], sync_redis: redis.Redis, redis_prefix: str
) -> None:
    one, two = batched
    assert one.budgets is not None
    batch: ScriptBatch = one.budgets.script  # type: ignore[attr-defined]
    verdicts = [await one.check(ci_call()) for _ in range(4)]
    assert [v.status for v in verdicts] == [200, 200, 200, 403]  # ci-daily: 3 a day
    assert (batch.items, batch.calls) == (4, 4)  # one script call each, record included
    # Stored by the call that reserved: another worker settles it, nothing drained first.
    assert await two.settle(verdicts[0].decision_id, {"executions": 0}) == 1
    # The fourth reserved, went over the limit and gave its reservation back: and its record.
    await one.drain()
    denied = reservation_key(redis_prefix, ORG, verdicts[3].decision_id)
    assert sync_redis.exists(denied) == 0
    assert await two.settle(verdicts[3].decision_id, {"executions": 0}) == 0
    window = period_window("day", datetime.now(UTC))
    counter = f"{redis_prefix}kaizen:budget:{{{ORG}}}:apikey:ci-bot:executions:{window}"
    assert float(sync_redis.get(counter) or 0) == 2.0  # three allowed, one settled at 0


async def test_unreachable_redis_denies_budgeted_callers_at_once(
    verified: VerifiedBundle, keys: Keys
) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=NO_RETRY)
    holder = EngineHolder(InMemoryBudgetLedger(), issuer=ISSUER, audience=AUDIENCE)
    holder.on_bundle(verified)
    authorizer = Authorizer(
        holder,
        replay_guard=InMemoryReplayGuard(),
        reservations=InMemoryReservationBook(),
        budgets=RedisBudgetBatch(dead),
    )
    first = await authorizer.check(ci_call())
    assert (first.status, first.outcome) == (403, "deny")
    assert first.reasons[0].startswith(
        "budgets could not be checked: LedgerUnavailableError: Redis budget store is unreachable"
    )
    started = time.monotonic()
    second = await authorizer.check(ci_call())  # the breaker: no new connection attempt
    assert second.status == 403
    assert "retrying shortly" in second.reasons[0]
    assert time.monotonic() - started < 0.1
    alice = HttpFacts("POST", CI, {"authorization": f"Bearer {access_token(keys)}"})
    assert (await authorizer.check(alice)).status == 200  # no budget applies to alice
    await dead.aclose()


@pytest.fixture
async def silent_redis() -> AsyncIterator[int]:
    """A server that accepts connections and never answers (a hung Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_slow_batch_fails_closed_without_opening_the_breaker(silent_redis: int) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=silent_redis, retry=NO_RETRY)
    batch = ScriptBatch(client, "return KEYS", args_per_key=0, timeout=0.1)
    for _ in range(2):  # the second call tries Redis again rather than failing fast
        with pytest.raises(BatchUnavailableError, match=r"no answer within 0.1 s"):
            await batch.call(["k"], [])
    assert batch.calls == 2
    await client.aclose()


# Each key incremented by its argument; the new values, in order.
INCRBY_EACH = (
    "local out = {} for i, k in ipairs(KEYS) do"
    " out[i] = redis.call('INCRBY', k, ARGV[i]) end return out"
)


async def test_script_batch_keeps_order_and_checks_arguments(
    async_redis: aioredis.Redis, redis_prefix: str
) -> None:
    batch = ScriptBatch(async_redis, INCRBY_EACH, args_per_key=1)
    key = redis_prefix + "n"
    results = await asyncio.gather(*(batch.call([key, key], [1, 10]) for _ in range(5)))
    assert results == [[1 + 11 * i, 11 + 11 * i] for i in range(5)]
    assert (batch.items, batch.calls) == (5, 1)  # all five queued before the first went
    assert await batch.call([], []) == []
    with pytest.raises(ValueError, match="2 keys need 2 args"):
        await batch.call([key, key], [1])
    await async_redis.delete(key)


async def test_submitted_writes_share_the_batch_and_idle_waits_for_them(
    async_redis: aioredis.Redis, redis_prefix: str
) -> None:
    batch = ScriptBatch(
        async_redis,
        "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[i]) end return KEYS",
        args_per_key=1,
    )
    keys = [f"{redis_prefix}record:{i}" for i in range(5)]
    for i, key in enumerate(keys):  # nobody waits: no future, no task per write
        batch.submit([key], [f"value-{i}".encode()])
    await batch.idle()
    assert [await async_redis.get(key) for key in keys] == [f"value-{i}".encode() for i in range(5)]
    assert (batch.items, batch.calls) == (5, 1)
    await batch.idle()  # idle again: returns at once
    await async_redis.delete(*keys)


async def test_a_lingering_write_waits_for_company_and_a_call_or_idle_takes_it_at_once(
    async_redis: aioredis.Redis, redis_prefix: str
) -> None:
    batch = ScriptBatch(async_redis, INCRBY_EACH, args_per_key=1)
    key = redis_prefix + "lingering"
    batch.submit([key], [1], linger=60)
    batch.submit([key], [10], linger=60)
    await asyncio.sleep(0.05)
    assert await async_redis.get(key) is None  # still lingering: nothing sent
    assert batch.calls == 0
    # A call goes at once and takes the lingering writes with it, in the order queued.
    assert await batch.call([key], [100]) == [111]
    assert batch.calls == 1
    batch.submit([key], [1000], linger=60)
    await asyncio.wait_for(batch.idle(), timeout=10)  # sends now: no waiting out the linger
    assert await async_redis.get(key) == b"1111"
    # Alone, a lingering write goes by itself once its linger is up.
    batch.submit([key], [5], linger=0.01)
    for _ in range(200):
        if await async_redis.get(key) == b"1116":
            break
        await asyncio.sleep(0.05)
    assert await async_redis.get(key) == b"1116"
    assert (batch.items, batch.calls) == (5, 3)
    await async_redis.delete(key)


async def test_a_submitted_write_that_fails_is_logged_not_raised(
    silent_redis: int, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=silent_redis, retry=NO_RETRY)
    batch = ScriptBatch(client, "return KEYS", args_per_key=0, timeout=0.1, what="record")
    batch.submit(["k"], [])
    batch.submit(["j"], [])
    await batch.idle()
    failed = [r for r in caplog.records if r.name == "authz_sidecar.redis_batch"]
    assert [r.getMessage() for r in failed] == [
        "2 record(s) not written to Redis: no answer within 0.1 s"
    ]
    await client.aclose()


def test_script_calls_are_packed_as_redis_py_packs_them() -> None:
    from redis.asyncio.connection import Connection

    from authz_sidecar.redis_batch import _resp

    keys = ["kaizen:budget:{org-1}:org:executions:month:2026-12", "k{é}"]
    args: list[bytes | str | int | float] = ["add", "1.5", 3600, b"\x00[1]\r\n", 0.25, -3]
    ours = _resp("EVALSHA", "a" * 40, len(keys), keys, args)
    theirs = b"".join(Connection().pack_command("EVALSHA", "a" * 40, len(keys), *keys, *args))
    assert ours == theirs


async def test_the_reservation_book_alone_queues_records_and_takes_them_once(
    async_redis: aioredis.Redis, redis_prefix: str
) -> None:
    """Without a budget batch (one that writes records with the reservations)."""
    book = RedisReservationBook(async_redis, redis_prefix)
    key = BudgetKey(ORG, "org", "executions", "day:2026-12-04")
    book.remember(ORG, "d-1", [Reservation("org-runs", key, 1.0)])
    await book.flushed()
    assert await book.take(ORG, "d-1") == [Reservation("org-runs", key, 1.0)]
    assert await book.take(ORG, "d-1") is None


# -- the token cache -----------------------------------------------------------------------------


@pytest.fixture
def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = authn_module.verify_eddsa

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(authn_module, "verify_eddsa", counting)
    return calls


def test_a_cached_token_still_expires(
    verified: VerifiedBundle, keys: Keys, count_verifications: list[str]
) -> None:
    authn = Authenticator(verified.compiled.kaizen, issuer=ISSUER, audience=AUDIENCE)
    # Expired 29 s ago: inside the 30 s leeway for at most another second.
    exp = int(time.time()) - authn_module.LEEWAY_SECONDS + 1
    token = access_token(keys, exp=exp, iat=exp - 60, nbf=exp - 60)
    for _ in range(3):
        assert authn.authenticate(f"Bearer {token}")["id"] == f"user:{ALICE}"
    assert len(count_verifications) == 1  # verified once, then served from the cache
    time.sleep(max(0.0, exp + authn_module.LEEWAY_SECONDS + 0.1 - time.time()))
    with pytest.raises(AuthenticationError, match="expired"):
        authn.authenticate(f"Bearer {token}")


async def test_a_key_removed_from_the_bundle_stops_verifying_at_once(
    keys: Keys, holder: EngineHolder, authorizer: Authorizer
) -> None:
    call = HttpFacts("POST", CI, {"authorization": f"Bearer {access_token(keys)}"})
    assert (await authorizer.check(call)).status == 200
    assert (await authorizer.check(call)).status == 200  # now from the token cache
    rotated = make_bundle(keys, revision=2, token_jwks=make_keys("cp-key-2").jwks)
    holder.on_bundle(load_bundle(rotated, keys.jwks, scope=ORG))
    refused = await authorizer.check(call)
    assert refused.status == 401
    assert refused.reasons == (
        "authentication failed: token is signed by a key this bundle does not know",
    )
