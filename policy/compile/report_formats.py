"""Policy test reports for people and for CI: `text`, `json` or `junit` (JUnit XML, which
GitHub Actions, GitLab and Jenkins render), from the report's dict form
(`PolicyTestReport.to_dict()`, which is also what the control plane's `/policies/test`
answers), so an offline and a remote run print the same thing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as ET

FORMATS = ("text", "json", "junit")


def render(report: Mapping[str, Any], fmt: str, *, suite: str = "kaizen-policy-tests") -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=True)
    if fmt == "junit":
        return junit(report, suite=suite)
    if fmt == "text":
        return str(report.get("report", ""))
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def junit(report: Mapping[str, Any], *, suite: str) -> str:
    """One <testcase> per case (classname: its PolicyTest document), a <failure> with the
    readable diff for each failing one."""
    failures = {(f["document"], f["case"]): f for f in report.get("failures", [])}
    cases = report.get("cases") or [
        {"document": document, "case": case, "passed": False} for document, case in failures
    ]
    root = ET.Element("testsuites")
    element = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(cases)),
        failures=str(sum(1 for c in cases if not c["passed"])),
        errors="0",
    )
    for case in cases:
        testcase = ET.SubElement(
            element, "testcase", classname=str(case["document"]), name=str(case["case"])
        )
        if case["passed"]:
            continue
        failure = failures.get((case["document"], case["case"]), {})
        actual = failure.get("actual") or {}
        expected = failure.get("expected") or {}
        message = (
            f"error: {failure['error']}"
            if failure.get("error")
            else f"expected {expected.get('outcome')}, got {actual.get('outcome')}"
        )
        node = ET.SubElement(testcase, "failure", message=message, type="PolicyTestFailure")
        node.text = str(failure.get("diff", ""))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
