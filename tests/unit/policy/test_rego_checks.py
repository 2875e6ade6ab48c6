"""Rego problems found before anything is evaluated, reported at the YAML line."""

from __future__ import annotations

import pytest

from policy.compile.rego_compile import aggregate_module, read_package
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet
from policy.errors import PolicyValidationError


def rego_doc(body: str, name: str = "g") -> str:
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    return f"kind: RegoPolicy\nmetadata: {{name: {name}}}\nspec:\n  rego: |\n{indented}"


def details(source: str) -> list[tuple[int | None, int | None, str]]:
    with pytest.raises(PolicyValidationError) as raised:
        parse_policy_source(source, "rego.yaml")
    return [(d["line"], d["column"], d["message"]) for d in raised.value.details]


def test_package_must_be_kaizen_abac_or_below() -> None:
    assert details(rego_doc("package other.thing\nimport rego.v1\n")) == [
        (5, 5, "package other.thing is outside kaizen.abac; use kaizen.abac.<name>")
    ]
    assert details(rego_doc("import rego.v1\n")) == [
        (5, 5, "the Rego text must start with `package kaizen.abac…`")
    ]
    assert "deny or require_approval" in details(rego_doc("package kaizen.abac.deny\n"))[0][2]
    parse_policy_source(rego_doc("package kaizen.abac\nimport rego.v1\n"))
    parse_policy_source(rego_doc("package kaizen.abac.team.one\nimport rego.v1\n"))


def test_syntax_error_is_reported_at_the_line_and_column_in_the_yaml_file() -> None:
    source = rego_doc(
        'package kaizen.abac.g\nimport rego.v1\ndeny contains "x" if {\n  input.a ==\n}'
    )
    # Rego line 4, column 11 ("==") is YAML line 4 + 4, column 11 + 4 of indentation.
    assert details(source) == [(8, 15, "Invalid boolean operator")]


def test_rego_in_a_json_string_reports_the_line_within_the_rego_text() -> None:
    source = (
        '{"kind": "RegoPolicy", "metadata": {"name": "g"},\n'
        ' "spec": {"rego": "package kaizen.abac.g\\nimport rego.v1\\n'
        'deny contains \\"x\\" if {\\n  input.a ==\\n}"}}'
    )
    [(line, column, message)] = details(source)
    assert (line, column) == (2, 19)
    assert message == "Invalid boolean operator (line 4, column 11 of the Rego text)"


def test_unknown_functions_are_rejected_even_though_rego_cpp_compiles_them() -> None:
    source = rego_doc(
        "package kaizen.abac.g\nimport rego.v1\n"
        'deny contains "private" if net.cidr_contains("10.0.0.0/8", input.request.source_ip)\n'
        'deny contains "typo" if contians(input.tool.name, "x")\n'
        'deny contains msg if {\n  msg := sprintf("%v", [helper(input.tool.name)])\n}\n'
        "helper(x) := upper(x)\n"
    )
    assert details(source) == [
        (7, 32, "unknown function net.cidr_contains"),
        (8, 29, "unknown function contians"),
    ]


def test_rego_v0_rule_bodies_are_rejected_because_stock_opa_would_be() -> None:
    source = rego_doc("package kaizen.abac.g\nallow {\n  input.a == 1\n}\n")
    assert details(source) == [(6, 11, "Rego v1 needs `if` before a rule body")]


def test_conflicting_rules_across_documents_are_found_when_the_set_is_validated() -> None:
    first = rego_doc(
        'package kaizen.abac.shared\nimport rego.v1\ndeny contains "a" if input.x', "one"
    )
    second = rego_doc("package kaizen.abac.shared\nimport rego.v1\ndeny := 5", "two")
    parse_policy_source(first)
    parse_policy_source(second)
    with pytest.raises(PolicyValidationError) as raised:
        PolicySet.from_sources([("one.yaml", first), ("two.yaml", second)], builtin_roles=False)
    (detail,) = raised.value.details
    assert detail["file"] == "two.yaml"
    assert detail["line"] == 7
    assert detail["message"] == "Invalid rule body for set rule"


def test_package_reading_and_the_aggregator() -> None:
    assert read_package("# comment\n\npackage kaizen.abac.a  # trailing\n") == "kaizen.abac.a"
    assert read_package('package kaizen.abac["x"]\n') is None
    module = aggregate_module(["kaizen.abac.b", "kaizen.abac.a", "kaizen.abac.a"])
    assert module.count("data.kaizen.abac.a.deny") == 1
    assert module.index("kaizen.abac.a") < module.index("kaizen.abac.b")
