"""Budget counters for the engine (policy.engine.budgets.BudgetLedger) and reservations to settle.

With Redis, every worker and every sidecar on that Redis shares the counters: a Lua
script adds the reservation and sets the key's expiry in one atomic step, and the
engine compares the returned total with the limit (and gives the amount back when it is
over), so concurrent callers can never push usage past a hard limit. Reservations are
kept by decision id so `POST /settle` works on any worker. Without Redis the counters
live in the process and the sidecar runs one worker.

On the decision path the sidecar does not block on Redis: the engine says what to
reserve (`DecisionEngine.begin`), `RedisBudgetBatch` adds the reservations of every
check waiting at that moment in one script call (one round trip for many requests), and
the engine finishes the decisions with the totals. `RedisBudgetLedger` is the blocking
client the engine itself calls (held calls, settle, release). Redis refusing connections
opens a breaker for a second: callers under a budget are denied at once (a ledger error
becomes a deny naming the failure) instead of each waiting for a timeout. A batch with
no answer within 0.5 s is denied the same way, without the breaker (a busy machine is
slow, not down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson
import redis
import redis.asyncio as aioredis

from authz_sidecar.redis_batch import BatchUnavailableError, ScriptBatch
from policy.engine.budgets import BudgetKey, InMemoryBudgetLedger, Reservation, org_tag

# INCRBYFLOAT and the expiry in one step; the expiry outlives the key's period window.
_RESERVE = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return total
"""
# Many writes in one step, three arguments per key (op, value, expiry): "add" adds to a
# counter and returns its total (INCRBYFLOAT, expiry set once); "set" stores a reservation
# record with its expiry; "del" forgets one. A decision's reservations and its record go
# in the same call, so /settle on any worker finds the record once the check has answered.
# "lease" (authz_sidecar/budget_leases.py, ADR 0015) takes two keys, the counter and its
# outstanding-lease counter (op "with"): value "amount most threshold share". It adds a
# lease of min(most, share of the headroom under threshold), in whole multiples of amount,
# when that covers amount, and answers "<lease> <total>"; otherwise it adds amount alone
# and answers "0 <total>" (so a threshold of -inf, NO_LEASE, is always exact). The lease
# minus amount (what this call did not use) goes to the outstanding counter.
_RESERVE_MANY = """
local out = {}
local function expire(key, expiry)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, expiry) end
end
for i, key in ipairs(KEYS) do
  local op, value, expiry = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if op == 'add' then
    out[i] = redis.call('INCRBYFLOAT', key, value)
    expire(key, expiry)
  elseif op == 'set' then
    redis.call('SET', key, value, 'EX', expiry)
    out[i] = 0
  elseif op == 'lease' then
    local amount, most, threshold, share = string.match(value, '^(%S+) (%S+) (%S+) (%S+)$')
    local need, limit = tonumber(amount), tonumber(threshold)
    local current = tonumber(redis.call('GET', key) or '0')
    local lease = 0
    if limit then lease = math.min(tonumber(most), (limit - current) * tonumber(share)) end
    if need > 0 then lease = math.floor(lease / need) * need end  -- whole calls: no residue
    if need > 0 and lease >= need then
      local granted = string.format('%.17g', lease)
      out[i] = granted .. ' ' .. redis.call('INCRBYFLOAT', key, granted)
      redis.call('INCRBYFLOAT', KEYS[i + 1], string.format('%.17g', lease - need))
      expire(KEYS[i + 1], expiry)
    else
      out[i] = '0 ' .. redis.call('INCRBYFLOAT', key, amount)
    end
    expire(key, expiry)
  elseif op == 'with' then
    out[i] = 0
  else
    redis.call('DEL', key)
    out[i] = 0
  end
end
return out
"""
_PERIOD_SECONDS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400, "month": 31 * 86_400}
_GRACE_SECONDS = 86_400
_BREAKER_SECONDS = 1.0
# Reservation records for /settle, many in one step: SET KEYS[i] ARGV[2i-1] EX ARGV[2i].
_REMEMBER_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
end
return KEYS
"""


class LedgerUnavailableError(Exception):
    """The shared budget store cannot be reached; budgets fail closed."""


def window_ttl(window: str) -> int:
    """Seconds a counter for `window` (e.g. "month:2026-11") must live: its period + a day."""
    return _PERIOD_SECONDS.get(window.split(":", 1)[0], 31 * 86_400) + _GRACE_SECONDS


class RedisBudgetLedger:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, prefix: str = "") -> RedisBudgetLedger:
        client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30
        )
        return cls(client, prefix)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def key(self, key: BudgetKey) -> str:
        return self._prefix + key.redis_key

    def usage(self, key: BudgetKey) -> float:
        """What calls used: the counter less what workers hold leased (ADR 0015)."""
        counter, leased = self._call(
            lambda: self._client.mget(self.key(key), self._prefix + key.leased_key)
        )
        return float(counter or 0.0) - float(leased or 0.0)

    def reserve(self, key: BudgetKey, amount: float) -> float:
        ttl = window_ttl(key.window)
        total = self._call(lambda: self._reserve(keys=[self.key(key)], args=[repr(amount), ttl]))
        return float(total)

    def release(self, key: BudgetKey, amount: float) -> None:
        self.reserve(key, -amount)

    def settle(self, key: BudgetKey, reserved: float, actual: float) -> None:
        if actual != reserved:
            self.reserve(key, actual - reserved)

    def _call(self, operation: Any) -> Any:
        if time.monotonic() < self._down_until:
            raise LedgerUnavailableError("Redis budget store is unreachable (retrying shortly)")
        try:
            return operation()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._down_until = time.monotonic() + _BREAKER_SECONDS
            raise LedgerUnavailableError(f"Redis budget store is unreachable: {exc}") from None


class RedisBudgetBatch:
    """Non-blocking budget reservations for the decision path, batched (redis_batch):
    the checks waiting while one script call is in flight share the next one.

    Each reservation is the same atomic INCRBYFLOAT (+ EXPIRE) as `RedisBudgetLedger`'s,
    in the order the checks asked, so totals and limits behave exactly as one at a time.
    A decision's reservation record (what `RedisReservationBook.take` reads for /settle)
    is written in the same script call as its reservations: no second round trip.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "",
        timeout: float = 0.5,
        record_ttl_seconds: int = 3600,
    ) -> None:
        self.prefix = prefix
        self.record_ttl = record_ttl_seconds
        self.script = ScriptBatch(
            client, _RESERVE_MANY, args_per_key=3, timeout=timeout, what="budget write"
        )

    async def reserve_many(
        self,
        items: Sequence[tuple[BudgetKey, float]],
        record: ReservationRecord | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> list[float]:
        """Add each amount to its key; the totals including them, in order. With `record`,
        the decision's reservation record is stored in the same atomic step. (`thresholds`
        is for leases, budget_leases.LeasedBudgets; every call here is exact.)"""
        keys = [self.prefix + key.redis_key for key, _ in items]
        args: list[bytes | str | int | float] = []
        for key, amount in items:
            args += ["add", repr(amount), window_ttl(key.window)]
        if record is not None:
            organization, decision_id, reservations = record
            keys.append(reservation_key(self.prefix, organization, decision_id))
            args += ["set", record_value(reservations), self.record_ttl]
        try:
            totals = await self.script.call(keys, args)
        except BatchUnavailableError as exc:
            raise LedgerUnavailableError(f"Redis budget store is unreachable: {exc}") from None
        return [float(total) for total in totals[: len(items)]]

    async def release(self, key: BudgetKey, amount: float) -> None:
        await self.reserve_many([(key, -amount)])

    async def flushed(self) -> None:
        """Return once every write queued so far has been sent."""
        await self.script.idle()

    async def forget(self, organization: str, decision_id: str) -> None:
        """Drop the record of a decision that reserved and was then not allowed."""
        name = reservation_key(self.prefix, organization, decision_id)
        try:
            await self.script.call([name], ["del", "", 0])
        except BatchUnavailableError as exc:
            raise LedgerUnavailableError(f"Redis budget store is unreachable: {exc}") from None


# A decision's reservations, under its organisation and id (ReservationBook.take).
ReservationRecord = tuple[str, str, Sequence[Reservation]]


def reservation_key(prefix: str, organization: str, decision_id: str) -> str:
    return f"{prefix}reservation:{org_tag(organization)}:{decision_id}"


def record_value(reservations: Sequence[Reservation]) -> bytes:
    return orjson.dumps([_encode(r) for r in reservations])


class ReservationBook(Protocol):
    """Reservations by organisation and decision id: a sidecar settles only its own
    organisation's decisions, even when tenants share one Redis."""

    def remember(
        self, organization: str, decision_id: str, reservations: Sequence[Reservation]
    ) -> None:
        """Keep a decision's reservations: at once, or queued (`flushed` waits for them)."""
        ...

    async def flushed(self) -> None:
        """Return once what `remember` was given so far is stored (or failed, logged)."""
        ...

    async def take(self, organization: str, decision_id: str) -> list[Reservation] | None:
        """The reservations of a decision, forgetting them (settle happens once)."""
        ...


class InMemoryReservationBook:
    def __init__(self, ttl_seconds: int = 3600, max_entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[float, list[Reservation]]] = {}

    def remember(
        self, organization: str, decision_id: str, reservations: Sequence[Reservation]
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[(organization, decision_id)] = (now + self._ttl, list(reservations))

    async def flushed(self) -> None:
        return None

    async def take(self, organization: str, decision_id: str) -> list[Reservation] | None:
        with self._lock:
            entry = self._entries.pop((organization, decision_id), None)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]


class RedisReservationBook:
    """Reservations by decision id in Redis, so any worker can settle them.

    Queued, not awaited (unlike the ledger): a record costs the check no Redis round
    trip, no task and no future, and the records of concurrent requests are written in
    one script call (redis_batch). `take` on this worker waits for them (`flushed`);
    a gateway settles only after the call it forwarded, long after the write.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_seconds: int = 3600) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._batch = ScriptBatch(
            client, _REMEMBER_MANY, args_per_key=2, timeout=0.5, what="reservation record"
        )

    def remember(
        self, organization: str, decision_id: str, reservations: Sequence[Reservation]
    ) -> None:
        name = reservation_key(self._prefix, organization, decision_id)
        self._batch.submit([name], [record_value(reservations), self._ttl])

    async def flushed(self) -> None:
        await self._batch.idle()

    async def take(self, organization: str, decision_id: str) -> list[Reservation] | None:
        raw = await self._client.getdel(reservation_key(self._prefix, organization, decision_id))
        if raw is None:
            return None
        return [_decode(item) for item in orjson.loads(raw)]


def _encode(reservation: Reservation) -> dict[str, Any]:
    key = reservation.key
    return {
        "budget": reservation.budget,
        "organization": key.organization,
        "scope": key.scope,
        "metric": key.metric,
        "window": key.window,
        "amount": reservation.amount,
    }


def _decode(item: Mapping[str, Any]) -> Reservation:
    key = BudgetKey(item["organization"], item["scope"], item["metric"], item["window"])
    return Reservation(item["budget"], key, float(item["amount"]))


__all__ = [
    "InMemoryBudgetLedger",
    "InMemoryReservationBook",
    "LedgerUnavailableError",
    "RedisBudgetBatch",
    "RedisBudgetLedger",
    "RedisReservationBook",
    "ReservationBook",
    "ReservationRecord",
    "reservation_key",
    "window_ttl",
]
