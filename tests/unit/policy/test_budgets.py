from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policy.engine.budgets import (
    NO_LEASE,
    BudgetIndex,
    BudgetKey,
    InMemoryBudgetLedger,
    period_window,
)
from policy.engine.decide import DecisionEngine
from policy.workloads import AgentConfig, CallBudget, ModelConfig

from .conftest import decision_input, engine_for

POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles: [{name: user, permissions: [{resource: "*", actions: [invoke, run, read]}]}]
  bindings:
    - {subject: "team:research", role: user}
    - {subject: "apikey:ci-bot", role: user}
    - {subject: "user:solo@example.com", role: user}
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {scope: "team:research", metric: cost_usd, limit: 500, soft_limit: 400, period: month}
    - {name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 2, period: day}
    - name: bot-tokens
      scope: "agent:support-bot"
      metric: tokens
      limit: 100
      period: hour
      actions: ["*"]
"""
MONTH = BudgetKey("org-1", "team:research", "cost_usd", "month:2026-11")
# Deployed in the bundle: what a call reserves at least (below every estimate used here).
AGENTS = {
    "support-bot": AgentConfig(
        "support-bot",
        ModelConfig("demo", "demo"),
        budget=CallBudget(max_cost_usd_per_call=0.5, max_tokens=50),
    ).to_dict()
}


def research(cost: float) -> dict[str, object]:
    return decision_input("user:carol@example.com", teams=("research",), cost=cost)


@pytest.fixture
def engine() -> DecisionEngine:
    return engine_for(POLICY, AGENTS)


def test_soft_limit_asks_for_approval_naming_the_budget(engine: DecisionEngine) -> None:
    assert isinstance(engine.ledger, InMemoryBudgetLedger)
    engine.ledger.set_usage(MONTH, 395)
    decision = engine.decide(research(10))
    assert decision.outcome == "require_approval"
    assert decision.reasons == (
        "budget spend[0] (team:research cost_usd per month) over soft limit: 405 of 400",
    )
    assert decision.matched_rules[-1] == "budget:spend[0]:soft_limit"
    assert decision.budget is not None
    assert decision.budget["used"] == 405
    assert engine.ledger.usage(MONTH) == 395  # nothing reserved for a held call


def test_hard_limit_denies_and_releases_every_reservation(engine: DecisionEngine) -> None:
    assert isinstance(engine.ledger, InMemoryBudgetLedger)
    engine.ledger.set_usage(MONTH, 499)
    decision = engine.decide(research(2))
    assert decision.outcome == "deny"
    assert decision.reasons == (
        "budget spend[0] (team:research cost_usd per month) exceeded: 501 of limit 500",
    )
    assert decision.reservations == ()
    assert engine.ledger.usage(MONTH) == 499


def test_allowed_calls_reserve_then_settle_or_release(engine: DecisionEngine) -> None:
    decision = engine.decide(research(10))
    assert decision.outcome == "allow"
    assert engine.ledger.usage(MONTH) == 10
    engine.settle(decision, {"cost_usd": 3.5})
    assert engine.ledger.usage(MONTH) == 3.5
    second = engine.decide(research(10))
    engine.release(second)
    assert engine.ledger.usage(MONTH) == 3.5


def test_execution_budget_counts_calls_per_day(engine: DecisionEngine) -> None:
    outcomes = [engine.decide(decision_input("apikey:ci-bot")).outcome for _ in range(3)]
    assert outcomes == ["allow", "allow", "deny"]
    denied = engine.decide(decision_input("apikey:ci-bot"))
    assert (
        "budget ci-daily (apikey:ci-bot executions per day) exceeded: 3 of limit 2"
        in denied.reasons
    )


def test_budgets_only_count_their_actions_unless_star(engine: DecisionEngine) -> None:
    for _ in range(5):
        assert engine.decide(decision_input("apikey:ci-bot", action="read")).outcome == "allow"
    over = decision_input("user:solo@example.com", action="read", resource="agent:support-bot")
    over["context"]["estimated_tokens"] = 150
    assert engine.decide(over).reasons == (
        "budget bot-tokens (agent:support-bot tokens per hour) exceeded: 150 of limit 100",
    )


def test_budgets_of_other_scopes_do_not_apply(engine: DecisionEngine) -> None:
    assert isinstance(engine.ledger, InMemoryBudgetLedger)
    engine.ledger.set_usage(MONTH, 10_000)
    decision = engine.decide(
        decision_input("user:solo@example.com", resource="agent:other", cost=5)
    )
    assert decision.outcome == "allow"
    assert decision.budget is None


def test_dry_run_looks_without_reserving(engine: DecisionEngine) -> None:
    assert engine.decide(research(10), dry_run=True).outcome == "allow"
    assert engine.ledger.usage(MONTH) == 0


def test_budgets_are_not_consulted_after_a_deny(engine: DecisionEngine) -> None:
    assert (
        engine.decide(decision_input("user:stranger@example.com", teams=(), cost=1)).outcome
        == "deny"
    )
    assert engine.ledger.usage(MONTH) == 0


@pytest.mark.parametrize(
    ("period", "window"),
    [
        ("hour", "hour:2026-01-01T05"),
        ("day", "day:2026-01-01"),
        ("week", "week:2026-W01"),
        ("month", "month:2026-01"),
    ],
)
def test_period_windows_are_calendar_utc(period: str, window: str) -> None:
    assert period_window(period, datetime(2026, 1, 1, 5, 30, tzinfo=UTC)) == window


def test_redis_key_shape() -> None:
    assert MONTH.redis_key == "kaizen:budget:{org-1}:team:research:cost_usd:month:2026-11"
    other = BudgetKey("a}:{b", "org", "executions", "day:2026-11-26")
    assert other.redis_key == "kaizen:budget:{a%7D:%7Bb}:org:executions:day:2026-11-26"


class UnreachableLedger(InMemoryBudgetLedger):
    def reserve(self, key: BudgetKey, amount: float) -> float:
        raise ConnectionError("redis is down")


def test_a_failing_ledger_is_a_deny_not_a_crash() -> None:
    engine = engine_for(POLICY, AGENTS, ledger=UnreachableLedger())
    decision = engine.decide(research(1))
    assert decision.outcome == "deny"
    assert decision.reasons == ("budgets could not be checked: ConnectionError: redis is down",)
    assert (
        engine.decide(decision_input("user:solo@example.com", resource="agent:other")).outcome
        == "allow"
    )


def test_lease_thresholds_are_the_soft_limit_else_the_limit_and_none_for_a_shared_counter() -> None:
    """What a sidecar's lease may fill a counter up to (ADR 0015): never a counter that two
    budgets count on, since a lease under one's limit could not keep the other's."""
    budgets = [
        {
            "name": "hard",
            "scope": "org",
            "metric": "cost_usd",
            "period": "day",
            "limit": 50,
            "actions": ["*"],
        },
        {
            "name": "soft",
            "scope": "agent:a",
            "metric": "tokens",
            "period": "day",
            "limit": 900,
            "soft_limit": 600,
            "actions": ["*"],
        },
        {
            "name": "invokes",
            "scope": "org",
            "metric": "executions",
            "period": "day",
            "limit": 100,
            "actions": ["invoke"],
        },
        {
            "name": "anything",
            "scope": "org",
            "metric": "executions",
            "period": "day",
            "limit": 1_000_000,
            "actions": ["*"],
        },
        {
            "name": "monthly",
            "scope": "org",
            "metric": "executions",
            "period": "month",
            "limit": 7,
            "actions": ["*"],
        },
    ]
    index = BudgetIndex(budgets, "org-1")
    assert index.lease_thresholds(index.applicable([], "agent:a", "invoke")) == (
        50.0,
        NO_LEASE,
        NO_LEASE,
        7.0,
        600.0,
    )
