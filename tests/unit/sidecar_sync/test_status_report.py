"""status_body: the status document of docs/runtime-protocols.md from the sidecar's parts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authz_sidecar.decision_log import DecisionBuffer  # noqa: TID251
from authz_sidecar.status_report import budget_usage, status_body  # noqa: TID251
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import BundleSync
from policy.engine.budgets import BudgetKey, InMemoryBudgetLedger

from .conftest import ORG, BundleFactory


async def test_status_body_has_the_protocol_shape(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path / "bundles", scope=ORG)
    store.install(make_bundle(7), jwks)
    sync = BundleSync(store, "http://cp.test", "kgw_x")
    sync.last_sync = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    sync.refused, sync.last_refusal = 2, "bundle signature does not verify"
    log = DecisionBuffer(tmp_path / "log")
    await log.append({"decision_id": "d-1", "input": {}, "result": {}})

    body = status_body(
        instance="host/1",
        started_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        store=store,
        sync=sync,
        logs=[log],
        decisions={"allow": 3},
    )
    await log.close()

    assert body == {
        "instance": "host/1",
        "bundle_revision": 7,
        "key_id": "cp-key-1",
        "last_sync": "2026-11-26T12:00:00Z",
        "decisions": {"allow": 3},
        "log_backlog": 1,
        "started_at": "2026-11-26T11:00:00Z",
        "bundle_verification_failures": 2,
        "last_verification_error": "bundle signature does not verify",
        "budgets": [],
    }


def test_status_body_before_any_bundle(tmp_path: Path) -> None:
    body = status_body(
        instance="host/1",
        started_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        store=BundleStore(tmp_path),
        sync=None,
    )
    assert (body["bundle_revision"], body["key_id"], body["last_sync"]) == (None, None, None)


def test_budget_usage_reads_each_budgets_current_window() -> None:
    ledger = InMemoryBudgetLedger()
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    daily = {
        "name": "org-daily",
        "scope": "org",
        "metric": "executions",
        "period": "day",
        "limit": 100,
        "soft_limit": 80,
    }
    monthly = {**daily, "name": "bot-monthly", "scope": "agent:bot", "period": "month"}
    ledger.reserve(BudgetKey("org-1", "org", "executions", "day:2026-11-26"), 7)
    ledger.reserve(BudgetKey("org-1", "org", "executions", "day:2026-11-25"), 50)  # yesterday's
    usage = budget_usage([daily, monthly], ledger, now, "org-1")
    assert [(u["name"], u["window"], u["used"]) for u in usage] == [
        ("org-daily", "day:2026-11-26", 7.0),
        ("bot-monthly", "month:2026-11", 0.0),
    ]
    assert usage[0]["limit"] == 100
    assert usage[0]["soft_limit"] == 80


def test_budget_usage_is_left_out_while_the_ledger_is_down() -> None:
    class Down(InMemoryBudgetLedger):
        def usage(self, key: BudgetKey) -> float:
            raise ConnectionError("redis is down")

    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    budget = {"name": "b", "scope": "org", "metric": "executions", "period": "day", "limit": 1}
    assert budget_usage([budget], Down(), now, "org-1") == []
