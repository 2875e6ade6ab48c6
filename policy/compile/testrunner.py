"""Run PolicyTest documents against the engine and explain each failure.

A case passes when the outcome is the expected one and every expected reason is among
the decision's reasons (other reasons may appear too). Budgets are looked at, never
reserved; `budget_usage` seeds what has been used in the current period window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.parse import Expectation, PolicyTestCase
from policy.documents.policy_set import PolicySet
from policy.engine.budgets import BudgetKey, InMemoryBudgetLedger, period_window
from policy.engine.decide import Decision, DecisionEngine


@dataclass(frozen=True)
class CaseResult:
    document: str
    case: str
    expected: Expectation
    decision: Decision | None
    error: str | None = None

    @property
    def missing_reasons(self) -> tuple[str, ...]:
        if self.decision is None or self.expected.reasons is None:
            return ()
        return tuple(r for r in self.expected.reasons if r not in self.decision.reasons)

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.decision is not None
            and self.decision.outcome == self.expected.outcome
            and not self.missing_reasons
        )

    def explain(self) -> str:
        """The readable diff of a failure (empty for a pass)."""
        if self.passed:
            return ""
        lines = [f"FAIL {self.document} / {self.case}"]
        if self.error is not None or self.decision is None:
            lines.append(f"  error:    {self.error}")
            return "\n".join(lines)
        decision = self.decision
        mark = "" if decision.outcome == self.expected.outcome else "   <-- differs"
        lines.append(f"  outcome:  expected {self.expected.outcome}, got {decision.outcome}{mark}")
        if self.expected.reasons is not None:
            lines.append("  reasons expected (each must appear):")
            lines.extend(
                f"    {'-' if r in self.missing_reasons else ' '} {r}"
                for r in self.expected.reasons
            )
        lines.append("  reasons got:")
        lines.extend(f"    + {r}" for r in decision.reasons or ("(none)",))
        if decision.matched_rules:
            lines.append(f"  matched rules: {', '.join(decision.matched_rules)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "case": self.case,
            "passed": self.passed,
            "expected": {"outcome": self.expected.outcome, "reasons": self.expected.reasons},
            "actual": None
            if self.decision is None
            else {"outcome": self.decision.outcome, "reasons": list(self.decision.reasons)},
            "error": self.error,
            "diff": self.explain(),
        }


@dataclass(frozen=True)
class PolicyTestReport:
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        """The report as the API answers it and `policy test --format json` prints it."""
        return {
            "passed": self.passed,
            "total": len(self.results),
            "cases": [
                {"document": r.document, "case": r.case, "passed": r.passed} for r in self.results
            ],
            "failures": [r.to_dict() for r in self.failures],
            "report": self.format(),
        }

    def format(self) -> str:
        parts = [r.explain() for r in self.failures]
        passed = len(self.results) - len(self.failures)
        parts.append(f"{passed} passed, {len(self.failures)} failed")
        return "\n\n".join(parts)


def run_policy_tests(
    policy_set: PolicySet,
    compiled: CompiledPolicy | None = None,
    *,
    context: CompileContext | None = None,
    engine: DecisionEngine | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PolicyTestReport:
    """Every case of every PolicyTest in the set; compiles the set unless given an engine."""
    now = clock()
    if engine is None:
        if compiled is None:
            compiled = compile_policy(policy_set, context or CompileContext("policy-tests"))
        engine = DecisionEngine(compiled, clock=lambda: now)
    budgets = list(engine.compiled.kaizen.get("budgets", []))
    results = []
    original_ledger = engine.ledger
    try:
        for document in policy_set.policy_tests:
            for case in document.cases:
                results.append(_run_case(engine, budgets, document.name, case, now))
    finally:
        engine.ledger = original_ledger
    return PolicyTestReport(tuple(results))


def _run_case(
    engine: DecisionEngine,
    budgets: list[dict[str, Any]],
    document: str,
    case: PolicyTestCase,
    now: datetime,
) -> CaseResult:
    ledger = InMemoryBudgetLedger()
    for usage in case.budget_usage:
        matching = [b for b in budgets if (b["scope"], b["metric"]) == (usage.scope, usage.metric)]
        if not matching:
            error = f"budget_usage {usage.scope} {usage.metric} matches no budget"
            return CaseResult(document, case.name, case.expect, None, error)
        for budget in matching:
            window = period_window(budget["period"], now)
            key = BudgetKey(engine.organization_id, usage.scope, usage.metric, window)
            ledger.set_usage(key, usage.used)
    engine.ledger = ledger
    return CaseResult(document, case.name, case.expect, engine.decide(case.input, dry_run=True))
