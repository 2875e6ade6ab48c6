"""A publish compiles the set's Rego once to check it and once more, with its data, for
the engine that runs its tests — not once per module on top (it was N + 2) — and
tokenises each module once (lint, the decision cache's input projection and the data the
modules reach share it). A set with a broken module still names the module and line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.errors import Invalid
from control_plane.services.rego_tasks import compile_and_test
from policy.compile import rego_compile, rego_lint
from policy.compile.compiler import CompileContext

RULES = {
    "a": 'deny contains "a: no shell" if input.tool.name == "shell"',
    "b": 'require_approval contains "b: large" if input.context.estimated_cost_usd > 5',
    "c": 'deny contains "c: night" if input.context.hour < 6',
}


def _source(broken: str | None = None) -> str:
    parts = []
    for name, rule in RULES.items():
        body = rule.replace(" if ", " if {{ ") + " }" if name == broken else rule
        parts.append(
            f"kind: RegoPolicy\nmetadata: {{name: rules-{name}}}\n"
            f"spec:\n  rego: |\n    package kaizen.abac.{name}\n    {body}\n"
        )
    parts.append(
        "kind: RolePolicy\nmetadata: {name: roles}\nspec:\n  roles:\n"
        "    - name: user\n      permissions: [{resource: 'agent:*', actions: [invoke]}]\n"
        "  bindings:\n    - {subject: 'user:a@x', role: user}\n"
    )
    parts.append(
        "kind: PolicyTest\nmetadata: {name: cases}\nspec:\n  cases:\n"
        "    - name: shell is denied\n"
        "      input: {principal: {id: 'user:a@x', type: user}, action: invoke,\n"
        "              resource: {type: agent, id: 'agent:bot'}, tool: {name: shell}}\n"
        "      expect: {outcome: deny, reasons: ['a: no shell']}\n"
    )
    return "---\n".join(parts)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    rego_compile.is_builtin("count")  # the built-in probe compiles once per process
    counts: dict[str, Any] = {"compiles": 0, "tokenised": []}
    new_interpreter, tokens = rego_compile.new_interpreter, rego_lint.tokens

    def counting_interpreter() -> Any:
        counts["compiles"] += 1
        return new_interpreter()

    def counting_tokens(source: str) -> Any:
        counts["tokenised"].append(source)
        return tokens(source)

    monkeypatch.setattr(rego_compile, "new_interpreter", counting_interpreter)
    monkeypatch.setattr(rego_lint, "tokens", counting_tokens)
    rego_lint.token_list.cache_clear()
    yield counts
    rego_lint.token_list.cache_clear()


def test_a_publish_compiles_the_set_twice_and_tokenises_each_module_once(
    counted: dict[str, Any],
) -> None:
    compiled, report = compile_and_test([("p.yaml", _source())], CompileContext("org"), run=True)
    assert report.passed, report.format()
    assert len(compiled.rego_modules) == 3
    assert counted["compiles"] == 2  # checked together, then the engine's (with data)
    assert sorted(counted["tokenised"]) == sorted(set(counted["tokenised"]))
    assert len(counted["tokenised"]) == 3


def test_a_broken_module_is_still_named_with_its_line(counted: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as refused:
        compile_and_test([("p.yaml", _source(broken="b"))], CompileContext("org"), run=True)
    details = refused.value.details or []
    assert details, refused.value
    assert {d.get("document") for d in details} == {1}  # the second document: rules-b
    assert all(d.get("line") for d in details)
