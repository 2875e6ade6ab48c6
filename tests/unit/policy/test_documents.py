from __future__ import annotations

from pathlib import Path

import pytest

from policy.documents.builtin_roles import BUILTIN_ROLES_YAML, builtin_role_policy
from policy.documents.parse import (
    Binding,
    Budget,
    BudgetPolicy,
    PolicyTest,
    RegoPolicy,
    RolePolicy,
    parse_policy_source,
)
from policy.errors import PolicyValidationError

from .conftest import EXAMPLE

REPO = Path(__file__).resolve().parents[3]


def test_the_contracts_example_parses_into_three_documents() -> None:
    roles, rego, spend = parse_policy_source(EXAMPLE, "example.yaml")
    assert isinstance(roles, RolePolicy)
    assert [r.name for r in roles.roles] == ["agent-user", "agent-admin"]
    assert roles.roles[1].inherits == ("agent-user",)
    assert roles.bindings[1] == Binding("team:sre", "agent-admin", "prod")
    assert roles.bindings[0].workspace is None
    assert isinstance(rego, RegoPolicy)
    assert rego.package == "kaizen.abac.guardrails"
    assert rego.module_path == "kaizen/abac/guardrails/policy.rego"
    assert isinstance(spend, BudgetPolicy)
    assert spend.budgets[0] == Budget(
        "spend[0]", "team:research", "cost_usd", "month", 500, 400, ("invoke", "run")
    )
    assert spend.budgets[1].soft_limit is None


def test_a_policy_test_document_parses_its_cases() -> None:
    source = """
kind: PolicyTest
metadata: {name: t}
spec:
  cases:
    - name: shell is denied
      input:
        principal: {id: "user:a@example.com"}
        action: invoke
        resource: {id: "agent:x"}
      expect: {outcome: deny, reasons: [no shell]}
      budget_usage: [{scope: org, metric: executions, used: 3}]
"""
    (test,) = parse_policy_source(source)
    assert isinstance(test, PolicyTest)
    (case,) = test.cases
    assert case.expect.outcome == "deny"
    assert case.expect.reasons == ("no shell",)
    assert case.budget_usage[0].used == 3
    assert case.input["resource"] == {"id": "agent:x"}


def test_every_document_round_trips_through_its_own_text() -> None:
    for document in parse_policy_source(EXAMPLE):
        assert document.text is not None
        (again,) = parse_policy_source(document.text)
        assert again == document
        assert again.to_dict() == document.to_dict()


def test_to_dict_is_the_documented_shape() -> None:
    (_, rego, _) = parse_policy_source(EXAMPLE)
    assert rego.to_dict() == {
        "apiVersion": "kaizen.studio/v1",
        "kind": "RegoPolicy",
        "metadata": {"name": "guardrails"},
        "spec": {"rego": rego.rego},
    }


def test_the_control_planes_builtin_roles_file_is_accepted_and_embedded_unchanged() -> None:
    text = (REPO / "control_plane/services/builtin_roles.yaml").read_text()
    (from_file,) = parse_policy_source(text, "builtin_roles.yaml")
    assert from_file == builtin_role_policy()
    assert BUILTIN_ROLES_YAML in text
    assert {r.name for r in builtin_role_policy().roles} >= {"viewer", "admin", "owner"}


def test_api_version_may_be_omitted_but_not_wrong() -> None:
    parse_policy_source(
        "kind: RegoPolicy\nmetadata: {name: a}\nspec: {rego: 'package kaizen.abac.a'}"
    )
    with pytest.raises(PolicyValidationError, match="unsupported apiVersion 'v2'"):
        parse_policy_source(
            "apiVersion: v2\nkind: BudgetPolicy\nmetadata: {name: a}\nspec: {budgets: []}"
        )


ROLE_HEADER = "kind: RolePolicy\nmetadata: {name: r}\nspec:\n"
BUDGET_HEADER = "kind: BudgetPolicy\nmetadata: {name: b}\nspec:\n  budgets:\n"


@pytest.mark.parametrize(
    ("source", "field", "line", "column", "message"),
    [
        ("kind: Policy\nmetadata: {name: a}\nspec: {}\n", "kind", 1, 7, "unknown kind 'Policy'"),
        (
            "kind: RolePolicy\nmetadata: {}\nspec: {}\n",
            "metadata",
            2,
            11,
            "missing required field 'name'",
        ),
        (
            "kind: RolePolicy\nmetadata: {name: 'a b'}\nspec: {}\n",
            "metadata.name",
            2,
            18,
            "invalid value",
        ),
        (
            ROLE_HEADER + "  bindings:\n    - {subject: 'bob', role: a}\n",
            "spec.bindings[0].subject",
            5,
            17,
            "a subject is user:<email>",
        ),
        (
            ROLE_HEADER
            + "  roles:\n    - {name: a, permissions: [{resource: 'agent', actions: [x]}]}\n",
            "spec.roles[0].permissions[0].resource",
            5,
            42,
            "a resource is <type>:<name>",
        ),
        (
            ROLE_HEADER
            + "  roles:\n    - {name: a, permissions: [{resource: 'a:*x', actions: [x]}]}\n",
            "spec.roles[0].permissions[0].resource",
            5,
            42,
            "'*' allowed only at the end",
        ),
        (
            ROLE_HEADER + "  roles:\n    - {name: a, permisions: []}\n",
            "spec.roles[0].permisions",
            5,
            29,
            "unknown field 'permisions'",
        ),
        (
            BUDGET_HEADER + "    - {scope: org, metric: dollars, limit: 1, period: day}\n",
            "spec.budgets[0].metric",
            5,
            28,
            "must be one of cost_usd, executions, tokens",
        ),
        (
            BUDGET_HEADER + "    - {scope: org, metric: tokens, limit: 1, period: year}\n",
            "spec.budgets[0].period",
            5,
            54,
            "must be one of day, hour, month, week",
        ),
        (
            BUDGET_HEADER
            + "    - {scope: org, metric: tokens, limit: 10, soft_limit: 20, period: day}\n",
            "spec.budgets[0].soft_limit",
            5,
            59,
            "soft_limit 20 is above limit 10",
        ),
        (
            BUDGET_HEADER + "    - {scope: org, metric: tokens, limit: -5, period: day}\n",
            "spec.budgets[0].limit",
            5,
            43,
            "must be at least 0",
        ),
        (
            BUDGET_HEADER
            + "    - {scope: org, metric: tokens, limit: 5, soft_limit: -1, period: day}\n",
            "spec.budgets[0].soft_limit",
            5,
            58,
            "must be at least 0",
        ),
        (
            BUDGET_HEADER + "    - {scope: 'galaxy:x', metric: tokens, limit: 5, period: day}\n",
            "spec.budgets[0].scope",
            5,
            15,
            "org, or user:/team:/apikey:/service:/agent:/pipeline:<name>",
        ),
    ],
)
def test_invalid_fields_are_reported_with_their_location(
    source: str, field: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(PolicyValidationError) as raised:
        parse_policy_source(source, "bad.yaml")
    details = [d for d in raised.value.details if d["field"] == field]
    assert details, raised.value.format()
    assert (details[0]["line"], details[0]["column"]) == (line, column)
    assert message in details[0]["message"]
    assert details[0]["file"] == "bad.yaml"
    assert details[0]["document"] == 0


def test_all_problems_of_all_documents_are_reported_at_once() -> None:
    source = (
        "kind: Nope\nmetadata: {name: a}\nspec: {}\n"
        "---\nkind: RolePolicy\nmetadata: {name: '!'}\nspec: {}\n"
    )
    with pytest.raises(PolicyValidationError) as raised:
        parse_policy_source(source)
    assert [(d["document"], d["field"]) for d in raised.value.details] == [
        (0, "kind"),
        (1, "metadata.name"),
    ]


def test_policy_test_cases_need_a_valid_input_and_outcome() -> None:
    source = """kind: PolicyTest
metadata: {name: t}
spec:
  cases:
    - name: one
      input: {principal: {id: 5}, action: invoke, resource: {id: "agent:x"}}
      expect: {outcome: maybe}
    - name: one
      input: {principal: {id: "user:a"}, action: invoke, resource: {id: "agent:x"}}
      expect: {outcome: allow}
"""
    with pytest.raises(PolicyValidationError) as raised:
        parse_policy_source(source)
    by_field = {d["field"]: d for d in raised.value.details}
    assert by_field["spec.cases[0].input.principal.id"]["message"] == "must be a non-empty string"
    assert by_field["spec.cases[0].input.principal.id"]["line"] == 6
    assert (
        "must be one of allow, deny, require_approval"
        in by_field["spec.cases[0].expect.outcome"]["message"]
    )
    assert "duplicate test case name 'one'" in by_field["spec.cases[1].name"]["message"]
