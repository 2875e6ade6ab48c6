"""Budgets: which limits apply to a call, and atomic reservations against a ledger.

The ledger is a protocol so the sidecar can back it with Redis (INCRBYFLOAT on
`BudgetKey.redis_key`); the in-memory ledger here is the embedded default and what tests
use. Usage is counted per period window (calendar hour/day/ISO week/month, UTC), per
organisation: the key names it, so tenants sharing one Redis never share a counter.

What a call reserves comes from the server side, never from the caller alone: an
`executions` budget reserves 1; `cost_usd` and `tokens` budgets reserve the deployed
agent's or pipeline's ceiling per call (`spec.budget`, carried in the signed bundle,
`call_ceilings`). The caller's estimate headers can only raise that amount. A call to an
agent or pipeline the bundle does not deploy has no ceiling, and a budget that would need
one is a deny (`UnknownCeilingError`), except in a dry run, which only looks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from policy.engine.decision_input import Outcome
from policy.errors import PolicyValidationError
from policy.workloads import parse_workload

# Actions that run a model behind the gateway; other actions (connect, list) spend nothing.
_SPENDING_ACTIONS = {"agent": "invoke", "pipeline": "run"}


class UnknownCeilingError(Exception):
    """A cost or tokens budget applies to a call whose ceiling the bundle does not carry."""


@dataclass(frozen=True, slots=True)
class BudgetKey:
    organization: str
    scope: str
    metric: str
    window: str  # e.g. "month:2026-11", "day:2026-11-26"

    @property
    def redis_key(self) -> str:
        # The organisation as a Redis Cluster hash tag: tenants on one Redis never share a
        # counter, and one tenant's counters share a slot, so one script may add to them all.
        return (
            f"kaizen:budget:{org_tag(self.organization)}:{self.scope}:{self.metric}:{self.window}"
        )

    @property
    def leased_key(self) -> str:
        """What sidecar workers hold leased of `redis_key`'s total and have not used yet
        (authz_sidecar/budget_leases.py): usage is the counter less this."""
        return (
            f"kaizen:leased:{org_tag(self.organization)}:{self.scope}:{self.metric}:{self.window}"
        )


def _lease_threshold(budget: Mapping[str, Any]) -> float:
    """The total below which a budget decides allow whoever asks: its soft limit if it has
    one (an approved call lifts it, a lease need not know), else its limit."""
    limit, soft_limit = float(budget["limit"]), budget.get("soft_limit")
    return limit if soft_limit is None else min(limit, float(soft_limit))


NO_LEASE = -math.inf  # a lease threshold nothing is under: every reservation exact


def org_tag(organization: str) -> str:
    """`{organization}` for Redis keys, escaped so that no two organisations' tags meet."""
    escaped = organization.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + escaped + "}"


@dataclass(frozen=True, slots=True)
class CallCeiling:
    """What one call of a deployed agent or pipeline may use, from its signed config."""

    cost_usd: float
    tokens: float


def call_ceilings(kaizen: Mapping[str, Any]) -> dict[str, CallCeiling]:
    """`{"agent:<name>" | "pipeline:<name>": CallCeiling}` from a bundle's data.json `kaizen`.

    An entry that does not parse as a workload config gets no ceiling, so a budgeted call
    to it is refused rather than reserved at the caller's word.
    """
    out: dict[str, CallCeiling] = {}
    for kind, collection in (("agent", "agents"), ("pipeline", "pipelines")):
        entries = kaizen.get(collection)
        if not isinstance(entries, Mapping):
            continue
        for name, entry in entries.items():
            if not isinstance(entry, Mapping) or entry.get("kind") != kind.capitalize():
                continue
            config = {k: v for k, v in entry.items() if k != "gateways"}
            try:
                workload = parse_workload(config, f"bundle {collection}.{name}")
            except (PolicyValidationError, ValueError, TypeError):
                continue
            if workload.name == name:
                budget = workload.budget
                ceiling = CallCeiling(budget.cost_ceiling(workload.limits), budget.token_ceiling())
                out[f"{kind}:{name}"] = ceiling
    return out


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


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class Reservation:
    budget: str
    key: BudgetKey
    amount: float


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class BudgetCheck:
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rules: tuple[str, ...]
    reservations: tuple[Reservation, ...]
    status: Mapping[str, Any] | None


NO_BUDGETS = BudgetCheck("allow", (), (), (), None)


class BudgetIndex:
    def __init__(
        self,
        budgets: Iterable[Mapping[str, Any]],
        organization: str,
        ceilings: Mapping[str, CallCeiling] | None = None,
    ) -> None:
        self.organization = organization
        self.ceilings: Mapping[str, CallCeiling] = ceilings or {}
        self._by_scope: dict[str, list[Mapping[str, Any]]] = {}
        counters: dict[tuple[Any, Any, Any], int] = {}
        for budget in budgets:
            self._by_scope.setdefault(budget["scope"], []).append(budget)
            counter = (budget["scope"], budget["metric"], budget["period"])
            counters[counter] = counters.get(counter, 0) + 1
        # Budgets leases may serve, by identity: not two budgets counting on one counter
        # (same scope, metric and period: one BudgetKey), whose limits a lease taken for
        # one of them could not keep for the other (ADR 0015).
        self._lease_thresholds = {
            id(budget): (
                _lease_threshold(budget)
                if counters[(budget["scope"], budget["metric"], budget["period"])] == 1
                else NO_LEASE
            )
            for scoped in self._by_scope.values()
            for budget in scoped
        }

    def __bool__(self) -> bool:
        return bool(self._by_scope)

    def lease_thresholds(self, budgets: Sequence[Mapping[str, Any]]) -> tuple[float, ...]:
        """For each of `budgets` (from `applicable`), the counter's total under which a
        lease may serve its reservations: its soft limit, else its limit; NO_LEASE when
        another budget counts on the same counter."""
        return tuple(self._lease_thresholds.get(id(budget), NO_LEASE) for budget in budgets)

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
        resource: str,
        action: str,
        approved: bool = False,
        needs: Sequence[tuple[BudgetKey, float]] | None = None,
    ) -> BudgetCheck:
        """Reserve (or, with reserve=False, only look) and compare with the limits.

        Reservations are released again unless the outcome is allow: a denied or
        held call must not consume budget. `approved` (a granted retry) lifts soft limits,
        not hard ones. `needs`: what `needs(...)` gave for the same arguments, when the
        caller has it already. Raises UnknownCeilingError (before reserving anything) when
        reserving needs a ceiling the bundle lacks.
        """
        if not budgets:
            return NO_BUDGETS
        if needs is None:
            needs = self.needs(
                budgets, context, now, resource=resource, action=action, reserve=reserve
            )
        reservations: list[Reservation] = []
        exceeded: list[str] = []
        soft: list[str] = []
        rules: list[str] = []
        # The status reported is the budget that decided, else the one closest to its limit.
        worst: tuple[int, float] = (-1, 0.0)
        status: tuple[Mapping[str, Any], BudgetKey, float] | None = None
        for budget, (key, amount) in zip(budgets, needs, strict=True):
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
            elif soft_limit is not None and used > float(soft_limit) and not approved:
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

    def needs(
        self,
        budgets: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        now: datetime,
        *,
        resource: str,
        action: str,
        reserve: bool = True,
    ) -> list[tuple[BudgetKey, float]]:
        """What the call adds to each budget's counter of the current window, in order.

        Raises UnknownCeilingError when reserving needs a ceiling the bundle lacks."""
        return [
            (
                BudgetKey(
                    self.organization,
                    budget["scope"],
                    budget["metric"],
                    period_window(budget["period"], now),
                ),
                self._amount(budget, context, resource, action, reserve),
            )
            for budget in budgets
        ]

    def raised_estimates(self, input: Mapping[str, Any]) -> Mapping[str, Any]:
        """`input` with `context.estimated_*` at least the call's ceiling, so a Rego rule on
        the estimate sees the server's figure too (a caller cannot lower it by omission)."""
        resource, action = input["resource"]["id"], input["action"]
        ceiling = self.ceilings.get(resource)
        if ceiling is None or _SPENDING_ACTIONS.get(resource.split(":", 1)[0]) != action:
            return input
        context = dict(input.get("context") or {})
        for field, server in (
            ("estimated_cost_usd", ceiling.cost_usd),
            ("estimated_tokens", ceiling.tokens),
        ):
            given = context.get(field)
            if not isinstance(given, int | float) or isinstance(given, bool) or given < server:
                context[field] = server
        return {**input, "context": context}

    def _amount(
        self,
        budget: Mapping[str, Any],
        context: Mapping[str, Any],
        resource: str,
        action: str,
        reserve: bool,
    ) -> float:
        """What the call counts against `budget`: the server's figure, raised by the caller's."""
        metric = budget["metric"]
        if metric == "executions":
            return 1.0  # one call is one execution, whatever the headers say
        field = "estimated_cost_usd" if metric == "cost_usd" else "estimated_tokens"
        value = context.get(field, 0)
        estimate = (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        )
        kind = resource.split(":", 1)[0]
        if _SPENDING_ACTIONS.get(kind) != action:
            return estimate  # connect/list/…: nothing runs a model
        ceiling = self.ceilings.get(resource)
        if ceiling is not None:
            server = ceiling.cost_usd if metric == "cost_usd" else ceiling.tokens
            return max(server, estimate)  # a caller may raise the estimate, never lower it
        if reserve:
            raise UnknownCeilingError(
                f"{_label(budget)}: {resource} is not deployed in this bundle, so there is no "
                f"server-side {metric} ceiling to reserve"
            )
        return estimate


def _label(budget: Mapping[str, Any]) -> str:
    return f"budget {budget['name']} ({budget['scope']} {budget['metric']} per {budget['period']})"


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
