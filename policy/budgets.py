"""Budgets: which limits apply to a call, and atomic reservations against a ledger.

The ledger is a protocol so the sidecar can back it with Redis (INCRBYFLOAT on
`BudgetKey.redis_key`); the in-memory ledger here is the embedded default and what tests
use. Usage is counted per period window (calendar hour/day/ISO week/month, UTC).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from policy.decision_input import Outcome


@dataclass(frozen=True, slots=True)
class BudgetKey:
    scope: str
    metric: str
    window: str  # e.g. "month:2026-11", "day:2026-11-26"

    @property
    def redis_key(self) -> str:
        return f"kaizen:budget:{self.scope}:{self.metric}:{self.window}"


class BudgetLedger(Protocol):
    def usage(self, key: BudgetKey) -> float: ...

    def reserve(self, key: BudgetKey, amount: float) -> float:
        """Add `amount` atomically and return the usage including it."""
        ...

    def release(self, key: BudgetKey, amount: float) -> None: ...

    def settle(self, key: BudgetKey, reserved: float, actual: float) -> None:
        """Replace a reservation by what the call really used."""
        ...


class InMemoryBudgetLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[BudgetKey, float] = {}

    def usage(self, key: BudgetKey) -> float:
        return self._usage.get(key, 0.0)

    def reserve(self, key: BudgetKey, amount: float) -> float:
        with self._lock:
            total = self._usage.get(key, 0.0) + amount
            self._usage[key] = total
            return total

    def release(self, key: BudgetKey, amount: float) -> None:
        self.reserve(key, -amount)

    def settle(self, key: BudgetKey, reserved: float, actual: float) -> None:
        self.reserve(key, actual - reserved)

    def set_usage(self, key: BudgetKey, used: float) -> None:
        with self._lock:
            self._usage[key] = used


def period_window(period: str, now: datetime) -> str:
    """The UTC calendar window `now` falls in (called per decision: no strftime)."""
    if period == "month":
        return f"month:{now.year:04d}-{now.month:02d}"
    if period == "day":
        return f"day:{now.year:04d}-{now.month:02d}-{now.day:02d}"
    if period == "hour":
        return f"hour:{now.year:04d}-{now.month:02d}-{now.day:02d}T{now.hour:02d}"
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"week:{year}-W{week:02d}"
    raise ValueError(f"unknown budget period {period!r}")


@dataclass(frozen=True, slots=True)
class Reservation:
    budget: str
    key: BudgetKey
    amount: float


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rules: tuple[str, ...]
    reservations: tuple[Reservation, ...]
    status: Mapping[str, Any] | None


NO_BUDGETS = BudgetCheck("allow", (), (), (), None)


class BudgetIndex:
    def __init__(self, budgets: Iterable[Mapping[str, Any]]) -> None:
        self._by_scope: dict[str, list[Mapping[str, Any]]] = {}
        for budget in budgets:
            self._by_scope.setdefault(budget["scope"], []).append(budget)

    def __bool__(self) -> bool:
        return bool(self._by_scope)

    def applicable(
        self, subjects: Sequence[str], resource: str, action: str
    ) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for scope in ("org", resource, *subjects):
            for budget in self._by_scope.get(scope, ()):
                actions = budget["actions"]
                if action in actions or "*" in actions:
                    found.append(budget)
        return found

    def check(
        self,
        ledger: BudgetLedger,
        budgets: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        now: datetime,
        *,
        reserve: bool,
    ) -> BudgetCheck:
        """Reserve (or, with reserve=False, only look) and compare with the limits.

        Reservations are released again unless the outcome is allow: a denied or
        held call must not consume budget.
        """
        if not budgets:
            return NO_BUDGETS
        reservations: list[Reservation] = []
        exceeded: list[str] = []
        soft: list[str] = []
        rules: list[str] = []
        # The status reported is the budget that decided, else the one closest to its limit.
        worst: tuple[int, float] = (-1, 0.0)
        status: tuple[Mapping[str, Any], BudgetKey, float] | None = None
        for budget in budgets:
            key = BudgetKey(budget["scope"], budget["metric"], period_window(budget["period"], now))
            amount = _amount(budget["metric"], context)
            if reserve:
                used = ledger.reserve(key, amount)
                reservations.append(Reservation(budget["name"], key, amount))
            else:
                used = ledger.usage(key) + amount
            limit, soft_limit = float(budget["limit"]), budget.get("soft_limit")
            severity = 0
            if used > limit:
                severity = 2
                exceeded.append(f"{_label(budget)} exceeded: {used:g} of limit {limit:g}")
                rules.append(f"budget:{budget['name']}:limit")
            elif soft_limit is not None and used > float(soft_limit):
                severity = 1
                soft.append(f"{_label(budget)} over soft limit: {used:g} of {float(soft_limit):g}")
                rules.append(f"budget:{budget['name']}:soft_limit")
            rank = (severity, used / limit if limit else float("inf"))
            if rank > worst:
                worst, status = rank, (budget, key, used)
        outcome: Outcome = "deny" if exceeded else ("require_approval" if soft else "allow")
        if outcome != "allow":
            for reservation in reservations:
                ledger.release(reservation.key, reservation.amount)
            reservations = []
        return BudgetCheck(
            outcome,
            tuple(exceeded or soft),
            tuple(rules),
            tuple(reservations),
            _status(*status) if status else None,
        )


def _label(budget: Mapping[str, Any]) -> str:
    return f"budget {budget['name']} ({budget['scope']} {budget['metric']} per {budget['period']})"


def _amount(metric: str, context: Mapping[str, Any]) -> float:
    if metric == "executions":
        return 1.0
    field = "estimated_cost_usd" if metric == "cost_usd" else "estimated_tokens"
    value = context.get(field, 0)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _status(budget: Mapping[str, Any], key: BudgetKey, used: float) -> dict[str, Any]:
    return {
        "name": budget["name"],
        "scope": budget["scope"],
        "metric": budget["metric"],
        "period": budget["period"],
        "window": key.window,
        "limit": budget["limit"],
        "soft_limit": budget.get("soft_limit"),
        "used": used,
    }
