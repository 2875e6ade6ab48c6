"""Budget leases: a worker serves most reservations from budget it leased (ADR 0015).

Without leases every check under a budget waits for a Redis round trip (~0.6 ms at a low
rate on our machines: more than the rest of the decision). With them a worker takes a
lease, a slice of the budget added to the shared counter at once, and serves the next
reservations from it without waiting for Redis:

- **The limit holds across workers and sidecars.** A lease is taken atomically in Redis
  and is at most `share` of the headroom left under the budget's threshold (its soft
  limit if it has one, else its limit; `BudgetIndex.lease_thresholds`), counting every
  other lease as used. So the counter, which holds all leases, never passes the threshold
  through leases, and a reservation served from a lease is under it. Near the threshold
  the headroom is too small for a lease and the call is reserved exactly, as without
  leases: the last calls before a limit are decided by the shared counter, one at a
  time. A counter two budgets count on (same scope, metric and period) is never leased:
  a lease kept under one's limit could not keep the other's.
- **Usage stays true.** What a worker holds leased and has not used is counted too
  (`BudgetKey.leased_key`): a lease adds its unused part there, and each served
  reservation takes its amount off, in a write queued with the decision's reservation
  record (not waited for; it lingers up to `WRITE_LINGER_SECONDS`, so it goes after the
  answer's way through Envoy and with its neighbours' writes, redis_batch). Usage =
  counter - leased (`RedisBudgetLedger.usage`, the status report), behind by what the
  last few milliseconds' writes have not yet brought.
- **A lease is given back** when it has not served for `idle_seconds`, when the window it
  counts in has ended (its key is idle from then), when a bundle lowers the threshold
  under what it was taken against, and on shutdown. A worker killed outright keeps its
  unused lease counted against the budget until the window ends: the budget errs towards
  refusing, by at most `lease_calls` calls per worker and budget.
- **Fail closed.** Redis unreachable while a lease must be taken: the call is denied as
  before (LedgerUnavailableError). A lease already held keeps serving: the budget it
  spends was counted when it was taken.

Settle and release are unchanged: they add to the counter, so usage moves by the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from authz_sidecar.budgets import (
    LedgerUnavailableError,
    RedisBudgetBatch,
    ReservationRecord,
    record_value,
    reservation_key,
    window_ttl,
)
from authz_sidecar.redis_batch import BatchUnavailableError
from policy.engine.budgets import BudgetKey

__all__ = ["DEFAULT_LEASE_CALLS", "WRITE_LINGER_SECONDS", "LeasedBudgets"]

log = logging.getLogger(__name__)

DEFAULT_LEASE_CALLS = 64  # a lease covers this many calls of the one that takes it, at most
DEFAULT_SHARE = 1 / 16  # of the headroom left under the threshold, at most
# A served reservation's bookkeeping (and record for /settle) waits this long for company:
# at 100 checks/s it then reaches Redis after the answer's round trip through Envoy, not
# during it; at 1,000/s one script call carries about five checks' writes. A /settle that
# misses a record another worker has not yet written looks again (Authorizer.settle).
WRITE_LINGER_SECONDS = 0.005
_SWEEP_SECONDS = 1.0


@dataclass(slots=True)
class _Lease:
    remaining: float  # leased, not yet used
    seen: float  # the counter's total when last leased: other workers' leases count as used
    threshold: float  # what it was taken under
    used_at: float  # monotonic
    leased_name: str  # the outstanding-lease counter's Redis key
    expiry: int  # seconds that counter lives (its window's)


class LeasedBudgets:
    """A BudgetReserver (authz_sidecar.authorizer) serving reservations from leases, and the
    shared counters (`RedisBudgetBatch`) for the rest. One per worker: its leases are its
    own, kept on its event loop (every step between awaits is atomic)."""

    def __init__(
        self,
        shared: RedisBudgetBatch,
        *,
        lease_calls: int = DEFAULT_LEASE_CALLS,
        share: float = DEFAULT_SHARE,
        idle_seconds: float = 5.0,
    ) -> None:
        if lease_calls < 1 or not 0 < share <= 1:
            raise ValueError("a lease needs lease_calls >= 1 and 0 < share <= 1")
        self._shared = shared
        self._script = shared.script
        self._prefix = shared.prefix
        self._record_ttl = shared.record_ttl
        self._lease_calls = lease_calls
        self._share = share
        self._idle = idle_seconds
        self._leases: dict[BudgetKey, _Lease] = {}
        self.served = 0  # reservations served from a lease, without waiting for Redis

    async def reserve_many(
        self,
        items: Sequence[tuple[BudgetKey, float]],
        record: ReservationRecord | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> list[float]:
        """Each amount reserved, from a lease where one covers it; the totals to compare
        with the limits, in order (a leased one: the counter as last seen, less what this
        worker has not used of its lease)."""
        if thresholds is None:
            return await self._shared.reserve_many(items, record)
        now = time.monotonic()
        totals = [0.0] * len(items)
        local: list[int] = []
        remote: list[int] = []
        for index, ((key, amount), threshold) in enumerate(zip(items, thresholds, strict=True)):
            lease = self._leases.get(key)
            if lease is not None and lease.threshold > threshold:  # a lower limit now
                self._give_back(key)
                lease = None
            if lease is not None and lease.remaining >= amount:
                lease.remaining -= amount
                lease.used_at = now
                totals[index] = lease.seen - lease.remaining
                local.append(index)
            else:
                remote.append(index)
        keys: list[str] = []
        args: list[bytes | str | int | float] = []
        for index in local:  # what this worker holds leased: less what these use
            key, amount = items[index]
            lease = self._leases[key]
            keys.append(lease.leased_name)
            args += ["add", repr(-amount), lease.expiry]
        for index in remote:
            key, amount = items[index]
            most = amount * self._lease_calls
            keys += [self._prefix + key.redis_key, self._prefix + key.leased_key]
            args += ["lease", f"{amount!r} {most!r} {thresholds[index]!r} {self._share!r}"]
            args += [window_ttl(key.window), "with", "", 0]
        if record is not None:
            organization, decision_id, reservations = record
            keys.append(reservation_key(self._prefix, organization, decision_id))
            args += ["set", record_value(reservations), self._record_ttl]
        self.served += len(local)
        if not remote:
            self._submit(keys, args)
            return totals
        try:
            values = await self._script.call(keys, args)
        except BatchUnavailableError as exc:
            for index in local:  # the call is denied: what it took goes back to the lease
                key, amount = items[index]
                if (lease := self._leases.get(key)) is not None:
                    lease.remaining += amount
            self.served -= len(local)
            raise LedgerUnavailableError(f"Redis budget store is unreachable: {exc}") from None
        for position, index in enumerate(remote):
            key, amount = items[index]
            granted, total = (float(part) for part in values[len(local) + 2 * position].split())
            if granted <= 0:  # too close to the threshold: reserved exactly
                totals[index] = total
                continue
            lease = self._leases.get(key)
            if lease is None:
                leased_name, expiry = self._prefix + key.leased_key, window_ttl(key.window)
                lease = _Lease(0.0, total, thresholds[index], now, leased_name, expiry)
                self._leases[key] = lease
            lease.remaining += granted - amount
            lease.seen = max(lease.seen, total)
            # The loosest threshold any part was taken under: a stricter one gives it back.
            lease.threshold = max(lease.threshold, thresholds[index])
            lease.used_at = now
            totals[index] = lease.seen - lease.remaining
        return totals

    async def release(self, key: BudgetKey, amount: float) -> None:
        await self._shared.release(key, amount)

    async def forget(self, organization: str, decision_id: str) -> None:
        await self._shared.forget(organization, decision_id)  # queued after its record

    async def flushed(self) -> None:
        await self._script.idle()

    async def run(self) -> None:
        """Give back leases idle for `idle_seconds` (their window ended, or traffic did)."""
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        for key in [k for k, lease in self._leases.items() if now - lease.used_at >= self._idle]:
            self._give_back(key)

    async def close(self) -> None:
        """Give back every lease and wait until Redis has them (shutdown)."""
        for key in list(self._leases):
            self._give_back(key)
        await self._script.idle()

    def leased(self, key: BudgetKey) -> float:
        """What this worker holds leased of `key` and has not used."""
        lease = self._leases.get(key)
        return lease.remaining if lease is not None else 0.0

    def _give_back(self, key: BudgetKey) -> None:
        lease = self._leases.pop(key)
        if lease.remaining:
            back, expiry = repr(-lease.remaining), lease.expiry
            self._submit(
                [self._prefix + key.redis_key, lease.leased_name],
                ["add", back, expiry, "add", back, expiry],
            )

    def _submit(self, keys: list[str], args: list[bytes | str | int | float]) -> None:
        try:
            self._script.submit(keys, args, linger=WRITE_LINGER_SECONDS)
        except BatchUnavailableError as exc:
            # The limit still holds (the counter has every lease); usage, or a record for
            # /settle, is off until the window ends.
            log.warning("budget lease bookkeeping not written to Redis: %s", exc)
