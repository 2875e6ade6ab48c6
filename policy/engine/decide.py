"""The decision engine: RBAC → ABAC → budgets; deny overrides require_approval overrides allow.

Built once per compiled policy or verified bundle and then only read, except for its
caches and the budget ledger. A policy or input error is a deny with a reason, never an
exception and never an allow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from policy.compile.compiler import CompiledPolicy
from policy.documents.source import dotted
from policy.engine.abac import AbacResult, EmbeddedRegoEvaluator, RegoEvaluator
from policy.engine.budgets import (
    NO_BUDGETS,
    BudgetCheck,
    BudgetIndex,
    BudgetKey,
    BudgetLedger,
    InMemoryBudgetLedger,
    Reservation,
    call_ceilings,
)
from policy.engine.decision_cache import InputProjection, LruCache, full_input_key
from policy.engine.decision_input import Outcome, input_problems
from policy.engine.rbac import RbacIndex, RbacResult, principal_subjects

if TYPE_CHECKING:
    from policy.bundles.bundle import VerifiedBundle

_RANK: dict[Outcome, int] = {"allow": 0, "require_approval": 1, "deny": 2}


_ENTROPY = bytearray()  # os.urandom read 4 KiB at a time: one syscall per ~400 ids
os.register_at_fork(after_in_child=_ENTROPY.clear)  # never two processes' same bytes


def new_decision_id() -> str:
    """A UUIDv7 as 32 hex digits: unique and ordered by time, which log storage likes."""
    millis = time.time_ns() // 1_000_000
    if len(_ENTROPY) < 10:
        _ENTROPY.extend(os.urandom(4096))
    random = int.from_bytes(_ENTROPY[-10:], "big")
    del _ENTROPY[-10:]
    rand_a, rand_b = random >> 68, random & (2**62 - 1)  # 12 and 62 random bits
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class Decision:
    decision_id: str
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rules: tuple[str, ...]
    bundle_revision: str | None
    key_id: str | None
    budget: Mapping[str, Any] | None = None
    reservations: tuple[Reservation, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The decision output of CONTRACTS.md (plus matched_rules)."""
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "matched_rules": list(self.matched_rules),
            "bundle_revision": self.bundle_revision,
            "key_id": self.key_id,
        }
        if self.budget is not None:
            out["budget"] = dict(self.budget)
        return out


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class _Stage:
    outcome: Outcome
    reasons: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class PendingBudgets:
    """A decision that waits only for its budget reservations: `begin` → reserve → `finish`.

    `needs` is what to add to the ledger, in order; the caller reserves them (e.g. in one
    Redis round trip with other requests') and passes the totals to `finish`. The decision
    id is fixed here, so the caller can store what it reserves under it in the same step.
    """

    stages: tuple[_Stage, ...]
    budgets: tuple[Mapping[str, Any], ...]
    context: Mapping[str, Any]
    now: datetime
    needs: tuple[tuple[BudgetKey, float], ...]
    resource: str = ""
    action: str = ""
    approved: bool = False
    decision_id: str = field(default_factory=lambda: new_decision_id())
    # What the counter's total may reach with a lease serving `needs[i]` (ADR 0015).
    thresholds: tuple[float, ...] = ()

    def reservations(self) -> tuple[Reservation, ...]:
        """What `needs` reserves, as the allowed decision will carry it (for /settle)."""
        return tuple(
            Reservation(budget["name"], key, amount)
            for budget, (key, amount) in zip(self.budgets, self.needs, strict=True)
        )


class _Reserved:
    """A ledger answering `reserve` with totals the caller already reserved, in order."""

    def __init__(self, totals: Sequence[float], release: Callable[[BudgetKey, float], None]):
        self._totals = iter(totals)
        self._release = release

    def usage(self, key: BudgetKey) -> float:
        raise NotImplementedError("a reserved check only reserves")

    def reserve(self, key: BudgetKey, amount: float) -> float:
        return next(self._totals)

    def release(self, key: BudgetKey, amount: float) -> None:
        self._release(key, amount)

    def settle(self, key: BudgetKey, reserved: float, actual: float) -> None:
        raise NotImplementedError("settle after the call, on the real ledger")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DecisionEngine:
    def __init__(
        self,
        compiled: CompiledPolicy,
        *,
        evaluator: RegoEvaluator | None = None,
        ledger: BudgetLedger | None = None,
        bundle_revision: str | None = None,
        key_id: str | None = None,
        cache_size: int = 100_000,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        kaizen = compiled.kaizen
        self.compiled = compiled
        self.organization_id = compiled.organization_id
        self.bundle_revision = bundle_revision
        self.key_id = key_id
        self.ledger: BudgetLedger = ledger if ledger is not None else InMemoryBudgetLedger()
        self._clock = clock
        self._rbac = RbacIndex(kaizen.get("roles", {}), kaizen.get("bindings", []))
        # Reservation amounts come from the deployed configs in this (signed) policy.
        self._budgets = BudgetIndex(
            kaizen.get("budgets", []), self.organization_id, call_ceilings(kaizen)
        )
        if evaluator is None and compiled.rego_modules:
            evaluator = EmbeddedRegoEvaluator(compiled.rego_modules, compiled.data)
        self._evaluator = evaluator
        self._projection = InputProjection.from_modules(compiled.rego_modules.values())
        self._rbac_cache: LruCache[tuple[Any, ...], RbacResult] = LruCache(cache_size)
        self._abac_cache: LruCache[Any, AbacResult] = LruCache(cache_size)

    @classmethod
    def from_bundle(cls, bundle: VerifiedBundle, **options: Any) -> DecisionEngine:
        return cls(
            bundle.compiled, bundle_revision=bundle.revision, key_id=bundle.key_id, **options
        )

    def decide(
        self,
        input: Mapping[str, Any],
        *,
        dry_run: bool = False,
        explain: bool = False,
        approved: bool = False,
    ) -> Decision:
        """Decide one request.

        `dry_run` looks at budgets without reserving (simulation, policy tests);
        `explain` evaluates every stage even after a deny and reports all reasons;
        `approved` is the retry of a held call with a verified approval grant: what asked
        for approval (ABAC, soft limits) allows, denies still deny, and the budgets are
        reserved like any allowed call's, so an approved call is charged and settled too.
        """
        early = self._stages(input, explain=explain, approved=approved)
        if isinstance(early, Decision):
            return early
        input, stages = early
        budget = NO_BUDGETS
        if explain or stages[-1].outcome != "deny":
            so_far = max((s.outcome for s in stages), key=_RANK.__getitem__)
            reserve = so_far == "allow" and not dry_run
            budget = self._budget_check(input, reserve=reserve, approved=approved)
            stages.append(_Stage(budget.outcome, budget.reasons, budget.matched_rules))
        return self._decision(_combine(stages, explain), budget.reservations, budget.status)

    def _stages(
        self, input: Mapping[str, Any], *, explain: bool, approved: bool
    ) -> Decision | tuple[Mapping[str, Any], list[_Stage]]:
        """The stages before budgets, shared by `decide` and `begin`: the input checked, the
        estimates raised to the signed ceilings, RBAC, then ABAC (unless RBAC denied and
        nothing is to be explained), approval applied. A Decision when the input is refused."""
        problems = input_problems(input)
        if problems:
            reasons = tuple(
                f"invalid decision input: {dotted(p) or 'input'} {m}" for p, m in problems
            )
            return self._decision(_Stage("deny", reasons, ("input",)), ())
        organization = input["principal"].get("organization")
        if organization is not None and organization != self.organization_id:
            stage = _Stage(
                "deny", ("principal belongs to another organization",), ("organization",)
            )
            return self._decision(stage, ())
        input = self._budgets.raised_estimates(input)
        stages = [self._rbac_stage(input)]
        if explain or stages[-1].outcome != "deny":
            stages.append(self._abac_stage(input))
        if approved:
            stages = [_approve(stage) for stage in stages]
        return input, stages

    def begin(
        self, input: Mapping[str, Any], *, approved: bool = False
    ) -> Decision | PendingBudgets:
        """`decide(input)` up to the budget reservations, which it leaves to the caller.

        A Decision when nothing is to be reserved (a deny, a held call, no budget applies);
        otherwise the reservations to make, then `finish` (or `fail_budgets`). The caller
        can so reserve without blocking, and batch many decisions' reservations.
        """
        early = self._stages(input, explain=False, approved=approved)
        if isinstance(early, Decision):
            return early
        input, stages = early
        principal = input["principal"]
        so_far = max((s.outcome for s in stages), key=_RANK.__getitem__)
        if so_far != "allow" or not self._budgets:
            return self._without_reservations(stages, input)
        subjects = principal_subjects(
            principal["id"], principal.get("type"), principal.get("teams") or ()
        )
        resource, action = input["resource"]["id"], input["action"]
        applicable = self._budgets.applicable(subjects, resource, action)
        if not applicable:
            return self._decision(_combine(stages, False), ())
        context, now = input.get("context") or {}, self._clock()
        failure: Exception | None = None
        try:
            needs = self._budgets.needs(applicable, context, now, resource=resource, action=action)
        except Exception as exc:  # as in decide(): a budget that cannot be checked denies
            needs, failure = [], exc
        pending = PendingBudgets(
            tuple(stages), tuple(applicable), context, now, tuple(needs), resource, action, approved
        )
        pending.thresholds = self._budgets.lease_thresholds(applicable)
        return pending if failure is None else self.fail_budgets(pending, failure)

    def finish(
        self,
        pending: PendingBudgets,
        totals: Sequence[float],
        *,
        release: Callable[[BudgetKey, float], None],
    ) -> Decision:
        """The decision once `pending.needs` are reserved; `totals[i]` is the ledger's total
        after adding `needs[i]`. Reservations of a call that is not allowed go to `release`.
        """
        if len(totals) != len(pending.needs):
            raise ValueError(f"{len(pending.needs)} reservations need as many totals")
        ledger = _Reserved(totals, release)
        try:
            budget = self._budgets.check(
                ledger,
                pending.budgets,
                pending.context,
                pending.now,
                reserve=True,
                resource=pending.resource,
                action=pending.action,
                approved=pending.approved,
                needs=pending.needs,  # planned by begin() for the same call and time
            )
        except Exception as exc:
            return self.fail_budgets(pending, exc)
        stages = [*pending.stages, _Stage(budget.outcome, budget.reasons, budget.matched_rules)]
        return self._decision(
            _combine(stages, False), budget.reservations, budget.status, pending.decision_id
        )

    def fail_budgets(self, pending: PendingBudgets, exc: BaseException) -> Decision:
        """The deny of a decision whose reservations could not be made (fail closed)."""
        reason = f"budgets could not be checked: {type(exc).__name__}: {exc}"
        stages = [*pending.stages, _Stage("deny", (reason,), ("budget:error",))]
        return self._decision(_combine(stages, False), decision_id=pending.decision_id)

    def _without_reservations(self, stages: list[_Stage], input: Mapping[str, Any]) -> Decision:
        # As decide(): a held call only looks at its budgets (reserves nothing).
        budget = NO_BUDGETS
        if stages[-1].outcome != "deny":
            budget = self._budget_check(input, reserve=False)
            stages.append(_Stage(budget.outcome, budget.reasons, budget.matched_rules))
        return self._decision(_combine(stages, False), budget.reservations, budget.status)

    def check_rbac(self, input: Mapping[str, Any]) -> RbacResult:
        principal, resource = input["principal"], input["resource"]
        roles = tuple(principal.get("roles") or ())
        teams = tuple(principal.get("teams") or ())
        workspace = resource.get("workspace") or ""
        key = (
            principal["id"],
            principal.get("type"),
            roles,
            teams,
            input["action"],
            resource["id"],
            workspace,
        )
        cached = self._rbac_cache.get(key)
        if cached is not None:
            return cached
        subjects = principal_subjects(principal["id"], principal.get("type"), teams)
        result = self._rbac.check(subjects, roles, input["action"], resource["id"], workspace)
        self._rbac_cache.put(key, result)
        return result

    def evaluate_abac(self, input: Mapping[str, Any]) -> AbacResult:
        if self._evaluator is None:
            return AbacResult()
        key = self._projection.key(input) if self._projection is not None else full_input_key(input)
        cached = self._abac_cache.get(key)
        if cached is not None:
            return cached
        try:
            result = self._evaluator.evaluate(input)
        except Exception as exc:  # a pluggable evaluator must not turn into a crash or allow
            result = AbacResult(error=f"{type(exc).__name__}: {exc}")
        # Errors are not cached: a transient external-OPA failure must not stick.
        if result.error is None and self._projection is not None:
            self._abac_cache.put(key, result)
        return result

    def settle(self, decision: Decision, actual: Mapping[str, float]) -> None:
        """After the call: replace each reservation by the real use (by metric)."""
        for reservation in decision.reservations:
            used = actual.get(reservation.key.metric, reservation.amount)
            self.ledger.settle(reservation.key, reservation.amount, used)

    def release(self, decision: Decision) -> None:
        """The call did not happen: give the reserved budget back."""
        for reservation in decision.reservations:
            self.ledger.release(reservation.key, reservation.amount)

    def clear_caches(self) -> None:
        self._rbac_cache.clear()
        self._abac_cache.clear()

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()

    def _rbac_stage(self, input: Mapping[str, Any]) -> _Stage:
        result = self.check_rbac(input)
        if result.allowed and result.grant is not None:
            return _Stage("allow", (), (result.grant.rule,))
        return _Stage("deny", (result.reason or "denied by RBAC",), ())

    def _abac_stage(self, input: Mapping[str, Any]) -> _Stage:
        result = self.evaluate_abac(input)
        if result.error is not None:
            return _Stage("deny", (f"ABAC evaluation failed: {result.error}",), ("abac:error",))
        if result.deny:
            return _Stage(
                "deny",
                tuple(reason for _, reason in result.deny),
                tuple(sorted({f"abac:{package}.deny" for package, _ in result.deny})),
            )
        if result.require_approval:
            return _Stage(
                "require_approval",
                tuple(reason for _, reason in result.require_approval),
                tuple(sorted({f"abac:{p}.require_approval" for p, _ in result.require_approval})),
            )
        return _Stage("allow", (), ())

    def _budget_check(
        self, input: Mapping[str, Any], *, reserve: bool, approved: bool = False
    ) -> BudgetCheck:
        if not self._budgets:
            return NO_BUDGETS
        principal, resource = input["principal"], input["resource"]
        subjects = principal_subjects(
            principal["id"], principal.get("type"), principal.get("teams") or ()
        )
        applicable = self._budgets.applicable(subjects, resource["id"], input["action"])
        context = input.get("context") or {}
        try:
            return self._budgets.check(
                self.ledger,
                applicable,
                context,
                self._clock(),
                reserve=reserve,
                resource=resource["id"],
                action=input["action"],
                approved=approved,
            )
        except Exception as exc:  # e.g. the sidecar's Redis ledger is unreachable: fail closed
            reason = f"budgets could not be checked: {type(exc).__name__}: {exc}"
            return BudgetCheck("deny", (reason,), ("budget:error",), (), None)

    def _decision(
        self,
        stage: _Stage,
        reservations: tuple[Reservation, ...] = (),
        budget: Mapping[str, Any] | None = None,
        decision_id: str | None = None,
    ) -> Decision:
        return Decision(
            decision_id=decision_id or new_decision_id(),
            outcome=stage.outcome,
            reasons=stage.reasons,
            matched_rules=stage.rules,
            bundle_revision=self.bundle_revision,
            key_id=self.key_id,
            budget=budget,
            reservations=reservations,
        )


def _approve(stage: _Stage) -> _Stage:
    """A stage that asked for approval, once the approval is granted."""
    if stage.outcome != "require_approval":
        return stage
    return _Stage("allow", (), stage.rules)


def _combine(stages: list[_Stage], explain: bool) -> _Stage:
    outcome = max((s.outcome for s in stages), key=_RANK.__getitem__)
    rules = tuple(rule for s in stages for rule in s.rules)
    if explain:
        return _Stage(outcome, tuple(r for s in stages for r in s.reasons), rules)
    reasons = tuple(r for s in stages if s.outcome == outcome for r in s.reasons)
    return _Stage(outcome, reasons, rules)
