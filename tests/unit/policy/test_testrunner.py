from __future__ import annotations

from policy.compile.testrunner import PolicyTestReport, run_policy_tests
from policy.documents.policy_set import PolicySet

from .conftest import EXAMPLE, NOW

TESTS = """\
kind: PolicyTest
metadata: {name: guardrail-tests}
spec:
  cases:
    - name: shell is denied
      input:
        principal: {id: "user:alice@example.com"}
        action: invoke
        resource: {id: "agent:support-bot"}
        tool: {name: shell, arguments: {}}
      expect: {outcome: deny, reasons: ["mcp tool shell is forbidden"]}
    - name: research near its budget needs approval
      input:
        principal: {id: "user:carol@example.com", roles: [agent-user], teams: [research]}
        action: invoke
        resource: {id: "agent:support-bot"}
        context: {estimated_cost_usd: 1}
      budget_usage: [{scope: "team:research", metric: cost_usd, used: 399.5}]
      expect: {outcome: require_approval}
"""

FAILING = """\
kind: PolicyTest
metadata: {name: wrong}
spec:
  cases:
    - name: alice may deploy to prod
      input:
        principal: {id: "user:alice@example.com"}
        action: deploy
        resource: {id: "agent:support-bot", workspace: prod}
      expect: {outcome: allow, reasons: ["deploys to prod need approval"]}
    - name: unknown budget usage
      input:
        principal: {id: "user:alice@example.com"}
        action: invoke
        resource: {id: "agent:support-bot"}
      budget_usage: [{scope: org, metric: tokens, used: 1}]
      expect: {outcome: allow}
"""


def run(*sources: str) -> PolicyTestReport:
    policy_set = PolicySet.from_sources(
        [(f"f{i}.yaml", s) for i, s in enumerate((EXAMPLE, *sources))]
    )
    return run_policy_tests(policy_set, clock=lambda: NOW)


def test_passing_cases_report_a_summary() -> None:
    report = run(TESTS)
    assert report.passed
    assert report.format() == "2 passed, 0 failed"


def test_a_failure_shows_expected_and_actual_outcome_and_reasons() -> None:
    report = run(TESTS, FAILING)
    assert not report.passed
    assert report.format() == (
        "FAIL wrong / alice may deploy to prod\n"
        "  outcome:  expected allow, got deny   <-- differs\n"
        "  reasons expected (each must appear):\n"
        "    - deploys to prod need approval\n"
        "  reasons got:\n"
        "    + no role grants deploy on agent:support-bot in workspace prod\n"
        "\n"
        "FAIL wrong / unknown budget usage\n"
        "  error:    budget_usage org tokens matches no budget\n"
        "\n"
        "2 passed, 2 failed"
    )
    failure = report.failures[0].to_dict()
    assert failure["actual"] == {
        "outcome": "deny",
        "reasons": ["no role grants deploy on agent:support-bot in workspace prod"],
    }
    assert failure["passed"] is False


def test_policy_tests_never_consume_budget() -> None:
    policy_set = PolicySet.from_sources([("e.yaml", EXAMPLE), ("t.yaml", TESTS)])
    for _ in range(3):
        assert run_policy_tests(policy_set, clock=lambda: NOW).passed
