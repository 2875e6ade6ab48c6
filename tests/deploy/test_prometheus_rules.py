"""The alert rules: valid for Prometheus, unit-tested with `promtool test rules`, and every
metric they read is one the control plane or the sidecar exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.exported import exported_names, names_in

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "kaizen-alerts.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test-deps.sh installs Debian's prometheus package"
    return subprocess.run(
        [promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, check=False
    )


def test_rules_are_valid() -> None:
    done = _promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    done = _promtool("test", "rules", "kaizen-alerts.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((RULES_DIR / "kaizen-alerts.test.yaml").read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts - fired == set()
    assert {
        "KaizenHighErrorRate",
        "KaizenHighLatencyP99",
        "KaizenGatewayDown",
        "KaizenGatewayStale",
        "KaizenBudgetExceeded",
        "KaizenBundleVerificationFailures",
        "KaizenChainVerificationFailed",
        "KaizenLoginLockouts",
        "KaizenWebhooksRefused",
        "KaizenDecisionLogBacklogGrowing",
    } <= alerts


def test_every_metric_a_rule_reads_is_exported() -> None:
    exported = exported_names()
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            missing = names_in(rule["expr"]) - exported
            assert not missing, f"{rule.get('alert') or rule.get('record')} reads {missing}"


def test_the_exported_check_catches_an_unknown_metric() -> None:
    assert names_in("rate(kaizen_no_such_metric_total[5m])") - exported_names() == {
        "kaizen_no_such_metric_total"
    }
