from __future__ import annotations

import pytest

from policy.documents.builtin_roles import BUILTIN_ROLES_NAME, BUILTIN_ROLES_YAML
from policy.documents.policy_set import PolicySet
from policy.errors import PolicyValidationError

from .conftest import EXAMPLE


def problems(
    *sources: str, builtin_roles: bool = False
) -> list[tuple[str | None, int | None, str]]:
    named = [(f"f{i}.yaml", text) for i, text in enumerate(sources)]
    with pytest.raises(PolicyValidationError) as raised:
        PolicySet.from_sources(named, builtin_roles=builtin_roles)
    return [(d["field"], d["line"], d["message"]) for d in raised.value.details]


def roles(body: str) -> str:
    return "kind: RolePolicy\nmetadata: {name: r}\nspec:\n" + body


def test_the_example_is_a_valid_set_that_includes_the_builtin_roles(example_set: PolicySet) -> None:
    assert example_set.documents[0].name == BUILTIN_ROLES_NAME
    assert {"agent-user", "agent-admin", "viewer", "owner"} <= set(example_set.roles)
    assert len(example_set.bindings) == 3
    assert [b.name for b in example_set.budgets] == ["spend[0]", "spend[1]"]


def test_tenant_roles_may_inherit_builtin_roles() -> None:
    policy_set = PolicySet.from_sources(
        [("r.yaml", roles("  roles: [{name: reader, inherits: [viewer]}]\n"))]
    )
    assert policy_set.roles["reader"].inherits == ("viewer",)


def test_a_document_named_like_the_builtin_roles_replaces_them() -> None:
    policy_set = PolicySet.from_sources([("b.yaml", BUILTIN_ROLES_YAML)])
    assert len(policy_set.role_policies) == 1
    assert policy_set.role_policies[0].source is not None
    assert policy_set.role_policies[0].source.file == "b.yaml"


def test_duplicate_document_names_are_rejected_at_the_second() -> None:
    assert problems(roles("  roles: []\n"), roles("  roles: []\n")) == [
        ("metadata.name", 2, "duplicate document name 'r'")
    ]


def test_role_defined_twice_across_documents() -> None:
    other = "kind: RolePolicy\nmetadata: {name: other}\nspec:\n  roles: [{name: viewer}]\n"
    assert problems(other, builtin_roles=True) == [
        ("spec.roles[0].name", 4, "role 'viewer' is already defined in builtin-organization-roles")
    ]


def test_inheriting_or_binding_an_undefined_role() -> None:
    source = roles(
        "  roles:\n    - {name: a, inherits: [ghost]}\n"
        "  bindings:\n    - {subject: 'user:x@example.com', role: nobody}\n"
    )
    assert problems(source) == [
        ("spec.roles[0].inherits[0]", 5, "inherits undefined role 'ghost'"),
        ("spec.bindings[0].role", 7, "binds undefined role 'nobody'"),
    ]


def test_inheritance_cycles_are_reported_once_each() -> None:
    source = roles(
        "  roles:\n"
        "    - {name: a, inherits: [b]}\n"
        "    - {name: b, inherits: [c]}\n"
        "    - {name: c, inherits: [a]}\n"
        "    - {name: d, inherits: [d]}\n"
        "    - {name: e, inherits: [a]}\n"
    )
    assert problems(source) == [
        ("spec.roles[0].inherits[0]", 5, "role inheritance cycle: a -> b -> c -> a"),
        ("spec.roles[3].inherits[0]", 8, "role inheritance cycle: d -> d"),
    ]


def test_duplicate_budget_names() -> None:
    source = (
        "kind: BudgetPolicy\nmetadata: {name: b}\nspec:\n  budgets:\n"
        "    - {name: x, scope: org, metric: tokens, limit: 5, period: day}\n"
        "    - {name: x, scope: org, metric: cost_usd, limit: 5, period: day}\n"
    )
    assert problems(source) == [("spec.budgets[1].name", 6, "duplicate budget name 'x'")]


def test_problems_from_every_file_are_reported_together() -> None:
    reported = problems("kind: X\nmetadata: {name: a}\nspec: {}\n", roles("  roles: 5\n"))
    assert [field for field, _, _ in reported] == ["kind", "spec.roles"]


def test_lookup_helpers(example_set: PolicySet) -> None:
    assert example_set.get("guardrails") is example_set.rego_policies[0]
    assert example_set.get("missing") is None
    assert example_set.policy_tests == ()
    assert PolicySet.from_sources([("e.yaml", EXAMPLE)], builtin_roles=False).roles.keys() == {
        "agent-user",
        "agent-admin",
    }


def test_one_package_with_two_sets_of_approvers_is_rejected() -> None:
    def doc(name: str, approvers: str) -> str:
        return (
            f"kind: RegoPolicy\nmetadata: {{name: {name}}}\nspec:\n  approvers: [{approvers}]\n"
            "  rego: |\n    package kaizen.abac.shared\n    import rego.v1\n"
            f'    require_approval contains "{name}" if input.action == "{name}"\n'
        )

    found = problems(doc("one", "operator"), doc("two", "viewer"))
    assert any(
        field == "spec.approvers" and "must name the same approvers" in message
        for field, _, message in found
    ), found
