"""The external-OPA evaluator over HTTP, against a local stand-in of OPA's REST API.

No package ships an OPA binary on our machines (TOOLCHAIN.md), so `tests/opa_standin.py`
implements the endpoints opa-python-client uses (PUT /v1/policies/{id}, PUT and POST
/v1/data/{path}) on 127.0.0.1 with a random port and evaluates with regopy. What this
proves: our client pushes the right modules and data, reads OPA's result shape, passes
strict built-in errors, and fails closed on every error. What it cannot prove: that a real
OPA evaluates identically (the shapes follow OPA's REST API documentation).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from opa_client.errors import RegoParseError

from policy.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.engine import DecisionEngine
from policy.opa_external import ExternalOpaEvaluator
from policy.policy_set import PolicySet
from tests.opa_standin import OpaStandIn, running_opa_standin
from tests.unit.policy.conftest import EXAMPLE, decision_input

STRICT = """\
kind: RegoPolicy
metadata: {name: ratio}
spec:
  rego: |
    package kaizen.abac.limits.ratio
    import rego.v1
    deny contains "ratio too high" if 10 / input.context.divisor > 2
"""


@pytest.fixture(scope="module")
def compiled() -> CompiledPolicy:
    policy_set = PolicySet.from_sources([("example.yaml", EXAMPLE), ("strict.yaml", STRICT)])
    return compile_policy(policy_set, CompileContext("org-1"))


@pytest.fixture
def opa() -> Iterator[tuple[str, OpaStandIn]]:
    with running_opa_standin() as server:
        yield server


def external_engine(url: str, compiled: CompiledPolicy) -> DecisionEngine:
    evaluator = ExternalOpaEvaluator.connect(url, compiled.rego_modules, compiled.data)
    return DecisionEngine(compiled, evaluator=evaluator, cache_size=0)


def with_divisor(value: dict[str, Any], divisor: float) -> dict[str, Any]:
    value["context"]["divisor"] = divisor
    return value


def test_modules_and_data_are_pushed_under_their_bundle_paths(
    opa: tuple[str, OpaStandIn], compiled: CompiledPolicy
) -> None:
    url, state = opa
    external_engine(url, compiled)
    assert state.policies == dict(compiled.rego_modules)
    assert state.data["kaizen"]["organization"] == "org-1"
    assert ("PUT", "/v1/policies/kaizen/abac/guardrails/policy.rego") in state.requests


def test_external_and_embedded_engines_decide_alike(
    opa: tuple[str, OpaStandIn], compiled: CompiledPolicy
) -> None:
    external = external_engine(opa[0], compiled)
    embedded = DecisionEngine(compiled)
    inputs = [
        with_divisor(decision_input(), 10),
        with_divisor(decision_input(tool="shell"), 10),
        with_divisor(decision_input(action="deploy", teams=("sre",), workspace="prod"), 10),
        with_divisor(decision_input(), 1),
    ]
    for value in inputs:
        a, b = external.decide(value), embedded.decide(value)
        assert (a.outcome, a.reasons, a.matched_rules) == (b.outcome, b.reasons, b.matched_rules)
    assert [external.decide(v).outcome for v in inputs] == [
        "allow",
        "deny",
        "require_approval",
        "deny",
    ]
    assert any("strict-builtin-errors=true" in path for _, path in opa[1].requests)


def test_a_builtin_error_in_opa_is_a_deny(
    opa: tuple[str, OpaStandIn], compiled: CompiledPolicy
) -> None:
    decision = external_engine(opa[0], compiled).decide(with_divisor(decision_input(), 0))
    assert decision.outcome == "deny"
    assert decision.reasons[0].startswith("ABAC evaluation failed: OPA query failed: 500")
    assert decision.matched_rules[-1] == "abac:error"


def test_an_unreachable_opa_is_a_deny(compiled: CompiledPolicy) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    evaluator = ExternalOpaEvaluator.connect(
        f"http://127.0.0.1:{port}", compiled.rego_modules, push=False, timeout=0.5
    )
    decision = DecisionEngine(compiled, evaluator=evaluator).decide(decision_input())
    assert decision.outcome == "deny"
    assert decision.reasons[0].startswith("ABAC evaluation failed: OPA query failed")


def test_opa_rejecting_a_module_fails_at_load_not_at_decision_time(
    opa: tuple[str, OpaStandIn],
) -> None:
    with pytest.raises(RegoParseError):
        ExternalOpaEvaluator.connect(
            opa[0], {"kaizen/abac/bad/policy.rego": "package kaizen.abac.bad\nx := {"}
        )


def test_the_url_must_be_http(compiled: CompiledPolicy) -> None:
    with pytest.raises(ValueError, match="OPA URL must be"):
        ExternalOpaEvaluator.connect("opa:8181", compiled.rego_modules, push=False)
