from __future__ import annotations

import re
from typing import Any

import pytest

from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.abac import referenced_data
from policy.engine.decide import DecisionEngine

from .conftest import ORG, decision_input, engine_for

ROLES = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
    - name: agent-admin
      inherits: [agent-user]
      permissions: [{resource: "agent:*", actions: [deploy]}]
    - name: bot-runner
      permissions: [{resource: "agent:support-*", actions: [invoke]}]
    - {name: superuser, permissions: [{resource: "*", actions: ["*"]}]}
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
    - {subject: "team:sre", role: agent-admin, workspace: prod}
    - {subject: "apikey:ci-bot", role: bot-runner}
"""


def rego(body: str, name: str = "rules") -> str:
    indented = "".join(
        f"    {line}\n"
        for line in ("package kaizen.abac." + name + "\nimport rego.v1\n" + body).splitlines()
    )
    return f"---\nkind: RegoPolicy\nmetadata: {{name: {name}}}\nspec:\n  rego: |\n{indented}"


def test_no_role_grants_the_action_means_deny_with_a_reason(engine: DecisionEngine) -> None:
    decision = engine.decide(decision_input("user:bob@example.com"))
    assert decision.outcome == "deny"
    assert decision.reasons == ("no role grants invoke on agent:support-bot",)
    assert decision.matched_rules == ()


def test_a_user_binding_allows_and_names_the_rule(engine: DecisionEngine) -> None:
    decision = engine.decide(decision_input())
    assert decision.outcome == "allow"
    assert decision.reasons == ()
    assert decision.matched_rules == ("rbac:agent-user:invoke:agent:*",)


def test_team_binding_restricted_to_its_workspace() -> None:
    engine = engine_for(ROLES)
    sre = {"principal": "user:bob@example.com", "teams": ("sre",), "action": "deploy"}
    assert engine.decide(decision_input(**sre, workspace="prod")).outcome == "allow"
    dev = engine.decide(decision_input(**sre, workspace="dev"))
    assert dev.outcome == "deny"
    assert dev.reasons == ("no role grants deploy on agent:support-bot in workspace dev",)
    assert engine.decide(decision_input(**sre)).outcome == "deny"


def test_inherited_permissions_apply_through_the_binding() -> None:
    engine = engine_for(ROLES)
    decision = engine.decide(
        decision_input("user:bob@example.com", teams=("sre",), workspace="prod")
    )
    assert decision.outcome == "allow"
    assert decision.matched_rules == ("rbac:agent-user:invoke:agent:*",)


def test_roles_carried_by_the_principal_count() -> None:
    engine = engine_for(ROLES)
    assert (
        engine.decide(
            decision_input("user:x@example.com", roles=("superuser",), action="delete")
        ).outcome
        == "allow"
    )
    assert (
        engine.decide(decision_input("user:x@example.com", roles=("no-such-role",))).outcome
        == "deny"
    )


def test_resource_globs_match_by_prefix() -> None:
    engine = engine_for(ROLES)
    assert (
        engine.decide(decision_input("apikey:ci-bot", resource="agent:support-bot")).outcome
        == "allow"
    )
    assert (
        engine.decide(decision_input("apikey:ci-bot", resource="agent:sales-bot")).outcome == "deny"
    )


def test_an_api_key_principal_without_the_prefix_is_its_apikey_subject() -> None:
    engine = engine_for(ROLES)
    value = decision_input("apikey:ci-bot")
    value["principal"]["id"] = "ci-bot"
    assert engine.decide(value).outcome == "allow"


def test_deny_overrides_require_approval_overrides_allow() -> None:
    engine = engine_for(
        ROLES
        + rego(
            'require_approval contains "needs a human" if input.tool.name == "email"', "approvals"
        )
        + rego(
            'deny contains "no shell" if input.tool.name == "shell"\n'
            'require_approval contains "shell is risky" if input.tool.name == "shell"',
            "guards",
        )
    )
    assert engine.decide(decision_input(tool="search")).outcome == "allow"
    held = engine.decide(decision_input(tool="email"))
    assert (held.outcome, held.reasons) == ("require_approval", ("needs a human",))
    assert held.matched_rules == (
        "rbac:agent-user:invoke:agent:*",
        "abac:kaizen.abac.approvals.require_approval",
    )
    denied = engine.decide(decision_input(tool="shell"))
    assert (denied.outcome, denied.reasons) == ("deny", ("no shell",))


def test_rbac_deny_short_circuits_but_explain_reports_every_stage() -> None:
    engine = engine_for(ROLES + rego('deny contains "no shell" if input.tool.name == "shell"'))
    value = decision_input("user:nobody@example.com", tool="shell")
    assert engine.decide(value).reasons == ("no role grants invoke on agent:support-bot",)
    explained = engine.decide(value, explain=True)
    assert explained.outcome == "deny"
    assert explained.reasons == ("no role grants invoke on agent:support-bot", "no shell")


@pytest.mark.parametrize(
    ("body", "value_overrides", "message"),
    [
        ('deny contains "x" if { 1 / input.context.zero > 0 }', {"zero": 0}, "divide by zero"),
        (
            'deny contains "x" if { upper(input.context.count) == "A" }',
            {"count": 5},
            "upper: operand 1 must be string",
        ),
        ("deny contains input.context.count if true", {"count": 5}, "holds a non-string"),
    ],
)
def test_a_rego_runtime_error_is_a_deny_with_the_reason(
    body: str, value_overrides: dict[str, Any], message: str
) -> None:
    engine = engine_for(ROLES + rego(body))
    value = decision_input()
    value["context"].update(value_overrides)
    decision = engine.decide(value)
    assert decision.outcome == "deny"
    assert decision.matched_rules[-1] == "abac:error"
    assert decision.reasons[0].startswith("ABAC evaluation failed: ")
    assert message in decision.reasons[0]


def test_a_function_rego_cpp_lacks_is_a_deny_not_a_crash(example_compiled: CompiledPolicy) -> None:
    # Validation rejects such a module; a hand-made compiled policy can still carry one.
    module = (
        "package kaizen.abac.net\nimport rego.v1\n"
        'deny contains "x" if net.cidr_contains("10.0.0.0/8", input.request.source_ip)\n'
    )
    compiled = CompiledPolicy.from_bundle_parts(
        dict(example_compiled.data), {"kaizen/abac/net/policy.rego": module}
    )
    decision = DecisionEngine(compiled).decide(decision_input())
    assert decision.outcome == "deny"
    assert "net.cidr_contains" in decision.reasons[0]


def test_modules_without_deny_or_approval_rules_are_simply_undefined() -> None:
    engine = engine_for(
        ROLES + rego("helper := input.action", "helpers") + rego("x if false", "empty")
    )
    for _ in range(3):
        assert engine.decide(decision_input()).outcome == "allow"


def test_invalid_input_is_denied_with_the_field(engine: DecisionEngine) -> None:
    value = decision_input()
    value["principal"]["roles"] = "admin"
    value["context"]["estimated_cost_usd"] = "lots"
    decision = engine.decide(value)
    assert decision.outcome == "deny"
    assert decision.reasons == (
        "invalid decision input: principal.roles must be a list of strings",
        "invalid decision input: context.estimated_cost_usd must be a number of at least 0",
    )
    assert engine.decide({"principal": "x"}).outcome == "deny"
    role_posing = decision_input("role:agent-user")
    assert engine.decide(role_posing).reasons == (
        "invalid decision input: principal.id must not start with role:",
    )


def test_a_principal_of_another_organization_is_denied(engine: DecisionEngine) -> None:
    decision = engine.decide(decision_input(organization="org-2"))
    assert (decision.outcome, decision.reasons) == (
        "deny",
        ("principal belongs to another organization",),
    )
    assert engine.decide(decision_input(organization=None)).outcome == "allow"


def test_decision_carries_id_revision_and_key(example_compiled: CompiledPolicy) -> None:
    engine = DecisionEngine(example_compiled, bundle_revision="7", key_id="kaizen-1")
    first, second = engine.decide(decision_input()), engine.decide(decision_input())
    assert re.fullmatch(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}", first.decision_id)
    assert first.decision_id != second.decision_id
    assert first.to_dict() | {"decision_id": "x"} == {
        "decision_id": "x",
        "outcome": "allow",
        "reasons": [],
        "matched_rules": ["rbac:agent-user:invoke:agent:*"],
        "bundle_revision": "7",
        "key_id": "kaizen-1",
    }
    assert engine.compiled.organization_id == ORG


class CountingEvaluator:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def evaluate(self, input: Any) -> Any:
        self.calls += 1
        return self.inner.evaluate(input)

    def close(self) -> None:
        self.inner.close()


def counting_engine(source: str) -> tuple[DecisionEngine, CountingEvaluator]:
    plain = engine_for(source)
    counter = CountingEvaluator(plain._evaluator)
    return DecisionEngine(plain.compiled, evaluator=counter), counter


def test_abac_cache_keys_on_the_input_the_rego_reads() -> None:
    engine, counter = counting_engine(
        ROLES + rego('deny contains "no shell" if input.tool.name == "shell"')
    )
    first = decision_input(tool="search")
    second = decision_input(tool="search")
    second["context"]["time"] = "2026-11-27T00:00:00Z"
    second["request"]["source_ip"] = "10.9.9.9"
    assert engine.decide(first).outcome == engine.decide(second).outcome == "allow"
    assert counter.calls == 1
    assert engine.decide(decision_input(tool="shell")).outcome == "deny"
    assert counter.calls == 2
    engine.clear_caches()
    engine.decide(first)
    assert counter.calls == 3


def test_no_abac_cache_for_rego_that_reads_the_clock() -> None:
    engine, counter = counting_engine(ROLES + rego('deny contains "late" if time.now_ns() < 0'))
    engine.decide(decision_input())
    engine.decide(decision_input())
    assert counter.calls == 2


def test_rego_reads_the_tenant_data_it_references() -> None:
    rule = 'deny contains "agent is retired" if data.kaizen.agents[input.resource.id].retired'
    policy_set = PolicySet.from_sources([("p.yaml", ROLES + rego(rule))], builtin_roles=False)
    agents = {"agent:old-bot": {"retired": True}, "agent:support-bot": {"retired": False}}
    engine = DecisionEngine(compile_policy(policy_set, CompileContext(ORG, agents=agents)))
    assert engine.decide(decision_input(resource="agent:old-bot")).reasons == ("agent is retired",)
    assert engine.decide(decision_input()).outcome == "allow"


def test_only_referenced_data_reaches_the_embedded_engine() -> None:
    data = {"kaizen": {"agents": {"a": 1}, "bindings": [1, 2], "roles": {}}}
    assert referenced_data(["x := data.kaizen.agents.a"], data) == {"kaizen": {"agents": {"a": 1}}}
    assert referenced_data(["import data.kaizen.roles as r\nx := r"], data) == {
        "kaizen": {"roles": {}}
    }
    assert referenced_data(["x := data.other.thing", "y := input.a"], data) == {"kaizen": {}}
    for everything in (
        "x := data.kaizen",
        "x := data[input.k]",
        "import data.kaizen\nx := kaizen.roles",
    ):
        assert referenced_data([everything], data) == data


class BrokenEvaluator:
    def evaluate(self, input: Any) -> Any:
        raise ConnectionError("OPA went away")

    def close(self) -> None:
        """Nothing to close."""


def test_an_evaluator_that_raises_is_a_deny(example_compiled: CompiledPolicy) -> None:
    decision = DecisionEngine(example_compiled, evaluator=BrokenEvaluator()).decide(
        decision_input()
    )
    assert decision.outcome == "deny"
    assert decision.reasons == ("ABAC evaluation failed: ConnectionError: OPA went away",)
