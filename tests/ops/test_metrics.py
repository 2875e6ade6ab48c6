"""The metrics added for operators: the sidecar's Observer (cache hit counts copied off the
check path, refused bundles, shipping lag), budget denials, and the control plane's shared
counters and connection-pool gauges as its /metrics shows them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from sqlalchemy.ext.asyncio import create_async_engine

from authz_sidecar import metrics  # noqa: TID251  (the sidecar's own metrics, in-process)
from control_plane import observability


def _value(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_observer_adds_cache_deltas_and_restarts_with_a_new_cache() -> None:
    observer = metrics.Observer()
    before = _value("kaizen_sidecar_cache_lookups_total", cache="token", result="hit")
    token = SimpleNamespace(hits=5, misses=2)
    snapshot = SimpleNamespace(engine=object(), authenticator=token)
    observer.observe(sync=None, log=None, snapshot=snapshot)
    token.hits = 8
    observer.observe(sync=None, log=None, snapshot=snapshot)
    assert _value("kaizen_sidecar_cache_lookups_total", cache="token", result="hit") == before + 8
    # A new bundle brings a new authenticator whose counts start at zero.
    snapshot.authenticator = SimpleNamespace(hits=1, misses=0)
    observer.observe(sync=None, log=None, snapshot=snapshot)
    assert _value("kaizen_sidecar_cache_lookups_total", cache="token", result="hit") == before + 9


def test_observer_counts_refused_bundles_and_shipping_lag() -> None:
    observer = metrics.Observer()
    before = _value("kaizen_sidecar_bundle_refused_total")
    sync = SimpleNamespace(refused=2)
    log = SimpleNamespace(backlog=0)
    observer.observe(sync=sync, log=log, snapshot=None)
    assert _value("kaizen_sidecar_bundle_refused_total") == before + 2
    assert _value("kaizen_sidecar_decision_log_shipping_lag_seconds") == 0
    observer._caught_up -= 120  # the log has been behind for two minutes
    log.backlog = 10
    observer.observe(sync=sync, log=log, snapshot=None)
    assert _value("kaizen_sidecar_decision_log_shipping_lag_seconds") >= 120
    assert _value("kaizen_sidecar_bundle_refused_total") == before + 2


def _decision(outcome: str, rules: tuple[str, ...], budget: Any) -> Any:
    return SimpleNamespace(outcome=outcome, matched_rules=rules, budget=budget)


def test_only_a_hard_budget_limit_counts_as_budget_exceeded() -> None:
    before = _value("kaizen_sidecar_budget_exceeded_total")
    status = {"name": "daily", "used": 11, "limit": 10}
    metrics.count_budget(_decision("deny", ("budget:daily:limit",), status))
    metrics.count_budget(_decision("require_approval", ("budget:daily:soft_limit",), status))
    metrics.count_budget(_decision("deny", ("rbac:no-role",), None))
    metrics.count_budget(_decision("allow", (), status))
    assert _value("kaizen_sidecar_budget_exceeded_total") == before + 1


def test_control_plane_metrics_show_shared_counters_and_the_pool() -> None:
    registry = observability.Metrics()
    engine = create_async_engine(
        "postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_size=7, max_overflow=3
    )
    registry.watch_pool(engine)
    observability.executions_reported(
        "org-1",
        [SimpleNamespace(status="succeeded", cost_usd=0.25)] * 3
        + [SimpleNamespace(status="failed", cost_usd=0.0)],
    )
    observability.decisions_received("org-1", ["allow", "deny", "deny", "bogus"])
    observability.chain_verified("audit", False)
    text = generate_latest(registry.registry).decode()
    assert "kaizen_db_pool_capacity 10.0" in text
    assert 'kaizen_db_pool_connections{state="in_use"} 0.0' in text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['kaizen_executions_total{organization="org-1",status="succeeded"}'] >= 3
    assert samples['kaizen_execution_cost_usd_total{organization="org-1"}'] >= 0.75
    assert samples['kaizen_decisions_ingested_total{organization="org-1",outcome="other"}'] >= 1
    assert samples['kaizen_chain_verifications_total{chain="audit",result="broken"}'] >= 1
    assert samples['kaizen_security_events_total{kind="chain_verification_failed"}'] >= 1


async def test_metrics_token_guards_only_metrics() -> None:
    import httpx
    from starlette.types import Receive, Scope, Send

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guarded = observability.RequestMiddleware(
        app, observability.Metrics(), 1024, 1024, metrics_token="s3cret-token"
    )
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer s3cret-tokeX"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert (await client.get("/metrics", headers=right)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
