"""gateways/executor.py `Run`: the workload's per-call ceilings and what a call settles."""

from __future__ import annotations

import pytest

from gateways.errors import LimitExceeded  # noqa: TID251  (the gateway under test)
from gateways.executor import Run  # noqa: TID251
from gateways.providers import PriceTable, Usage  # noqa: TID251
from policy.workloads import CallBudget, Limits


def test_a_run_stops_past_its_token_ceiling_and_settles_real_usage() -> None:
    run = Run(Limits(), PriceTable(), CallBudget(max_tokens=100))
    run.charge("gpt-4o-mini", Usage(40, 20))
    assert run.settlement() == {
        "cost_usd": pytest.approx((40 * 0.15 + 20 * 0.60) / 1_000_000),
        "tokens": 60.0,
        "executions": 1,
    }
    with pytest.raises(LimitExceeded) as stopped:
        run.charge("gpt-4o-mini", Usage(30, 20))
    assert stopped.value.details == {"limit": "budget.max_tokens", "value": 100}
    assert run.settlement()["tokens"] == 110.0  # what it really used, past the ceiling too


def test_the_lower_cost_ceiling_stops_the_run_and_a_declared_price_is_charged() -> None:
    budget = CallBudget(max_cost_usd_per_call=0.01, price_per_1m_tokens=(1000.0, 0.0))
    run = Run(Limits(max_cost_usd=0.5), PriceTable(), budget)
    assert run.max_cost_usd == 0.01
    price = budget.price_per_1m_tokens  # the agent's own (a pipeline's agents each have one)
    run.charge("in-house-llm", Usage(10, 0), price)  # 10 tokens x 1000 USD / 1M: the ceiling
    with pytest.raises(LimitExceeded) as stopped:
        run.charge("in-house-llm", Usage(1, 0), price)
    assert stopped.value.details == {"limit": "budget.max_cost_usd_per_call", "value": 0.01}


def test_an_unmetered_call_settles_at_least_its_ceilings() -> None:
    run = Run(Limits(max_cost_usd=0.2), PriceTable(), CallBudget(max_tokens=500))
    run.charge("gpt-4o-mini", Usage(10, 10))
    run.unmetered = True  # e.g. the stream was cut before the model reported its usage
    assert run.settlement() == {"cost_usd": 0.2, "tokens": 500.0, "executions": 1}
