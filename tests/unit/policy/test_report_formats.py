"""Policy test reports as text, JSON and JUnit XML, from an offline run's report."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from policy.compile.report_formats import render
from policy.compile.testrunner import run_policy_tests
from policy.documents.policy_set import PolicySet

SET = """\
kind: RolePolicy
metadata: {name: r}
spec:
  roles: [{name: user, permissions: [{resource: "agent:bot", actions: [invoke]}]}]
  bindings: [{subject: "user:a@x", role: user}]
---
kind: PolicyTest
metadata: {name: cases}
spec:
  cases:
    - name: a may
      input: {principal: {id: "user:a@x", type: user}, action: invoke,
              resource: {type: agent, id: "agent:bot"}}
      expect: {outcome: allow}
    - name: b <may> & "should" not
      input: {principal: {id: "user:b@x", type: user}, action: invoke,
              resource: {type: agent, id: "agent:bot"}}
      expect: {outcome: allow}
"""


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    return run_policy_tests(PolicySet.from_sources([("p.yaml", SET)])).to_dict()


def test_junit_has_every_case_and_a_failure_with_the_diff(report: dict[str, object]) -> None:
    suite = ET.fromstring(render(report, "junit")).find("testsuite")  # noqa: S314  (ours)
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["a may"].find("failure") is None
    failure = cases['b <may> & "should" not'].find("failure")  # escaped, parsed back intact
    assert failure is not None
    assert failure.get("message") == "expected allow, got deny"
    assert "FAIL cases / b <may>" in (failure.text or "")
    assert {c.get("classname") for c in cases.values()} == {"cases"}


def test_json_is_the_report_and_text_is_the_readable_diff(report: dict[str, object]) -> None:
    assert json.loads(render(report, "json")) == report
    assert render(report, "text").endswith("1 passed, 1 failed")


def test_an_unknown_format_is_refused(report: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="one of text, json, junit"):
        render(report, "tap")
