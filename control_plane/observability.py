"""JSON logs carrying request and organisation ids, Prometheus metrics, request limits.

The middlewares are pure ASGI (no BaseHTTPMiddleware) so they add no task per request.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.errors import Invalid, KaizenError, PayloadTooLarge, Unauthenticated
from policy.runtime import logs
from policy.runtime.logs import organization_id_var, request_id_var


def configure_logging(level: str = "INFO", *, json_format: bool = True) -> None:
    """The control plane's logs, in the one format of every runtime (`policy/runtime/logs.py`)."""
    logs.configure_logging("control-plane", level, json_format=json_format)


# Counted where they happen (services and routes), shown by every app's registry in this
# process: not registered anywhere themselves, `Metrics` collects them (`_Shared`).
DECISIONS_INGESTED = Counter(
    "kaizen_decisions_ingested_total",
    "Decision records received from sidecars, by organisation and outcome.",
    ["organization", "outcome"],
    registry=None,
)
EXECUTIONS = Counter(
    "kaizen_executions_total",
    "Agent and pipeline executions reported by gateways, by organisation and status.",
    ["organization", "status"],
    registry=None,
)
EXECUTION_COST = Counter(
    "kaizen_execution_cost_usd_total",
    "Cost of reported executions in US dollars, by organisation.",
    ["organization"],
    registry=None,
)
GATEWAY_LAST_SEEN = Gauge(
    "kaizen_gateway_last_seen_timestamp_seconds",
    "When a gateway's sidecar or gateway last reached this replica (Unix seconds).",
    ["organization", "gateway"],
    registry=None,
)
SECURITY_EVENTS = Counter(
    "kaizen_security_events_total",
    "Security events: login_lockout, webhook_refused, chain_verification_failed.",
    ["kind"],
    registry=None,
)
CHAIN_VERIFICATIONS = Counter(
    "kaizen_chain_verifications_total",
    "Hash-chain verifications (chain: audit, decisions) by result (intact, broken).",
    ["chain", "result"],
    registry=None,
)
POLICY_TESTS = Counter(
    "kaizen_policy_test_cases_total",
    "PolicyTest cases run through the API (POST /policies/test), by result.",
    ["result"],
    registry=None,
)
POLICY_TEST_RUNS = Counter(
    "kaizen_policy_test_runs_total",
    "Policy test runs through the API, by result (passed: every case passed).",
    ["result"],
    registry=None,
)
APPROVALS = Counter(
    "kaizen_approvals_total",
    "Approval requests by event: opened, approved, denied, expired.",
    ["event"],
    registry=None,
)
for _kind in ("login_lockout", "webhook_refused", "chain_verification_failed"):
    SECURITY_EVENTS.labels(_kind)  # present at 0, so increase() sees the first one
_SHARED = (
    DECISIONS_INGESTED,
    EXECUTIONS,
    EXECUTION_COST,
    GATEWAY_LAST_SEEN,
    SECURITY_EVENTS,
    CHAIN_VERIFICATIONS,
    POLICY_TESTS,
    POLICY_TEST_RUNS,
    APPROVALS,
)


def chain_verified(chain: str, intact: bool) -> None:
    CHAIN_VERIFICATIONS.labels(chain, "intact" if intact else "broken").inc()
    if not intact:
        security_event("chain_verification_failed")


def policy_tests(passed: bool, total: int, failed: int) -> None:
    POLICY_TEST_RUNS.labels("passed" if passed else "failed").inc()
    POLICY_TESTS.labels("passed").inc(max(total - failed, 0))
    POLICY_TESTS.labels("failed").inc(failed)


def approvals(event: str, count: int) -> None:
    if count:
        APPROVALS.labels(event).inc(count)


def gateway_seen(organization: str, gateway: str) -> None:
    GATEWAY_LAST_SEEN.labels(organization, gateway).set(time.time())


def security_event(kind: str) -> None:
    SECURITY_EVENTS.labels(kind).inc()


def executions_reported(organization: str, records: Iterable[Any]) -> None:
    """Count executions (`status`, `cost_usd` of each record) once per status."""
    statuses: dict[str, int] = {}
    cost = 0.0
    for record in records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
        cost += record.cost_usd
    for status, count in statuses.items():
        EXECUTIONS.labels(organization, status).inc(count)
    if cost:
        EXECUTION_COST.labels(organization).inc(cost)


def decisions_received(organization: str, outcomes: Iterable[Any]) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome if outcome in ("allow", "deny", "require_approval") else "other"
        counts[key] = counts.get(key, 0) + 1
    for outcome, count in counts.items():
        DECISIONS_INGESTED.labels(organization, outcome).inc(count)


class _Shared:
    def collect(self) -> Iterator[Metric]:
        for metric in _SHARED:
            yield from metric.collect()


class _Pool:
    """The database connection pool, read at scrape time (no cost between scrapes)."""

    def __init__(self) -> None:
        self.engine: Any = None

    def collect(self) -> Iterator[Metric]:
        pool = getattr(getattr(self.engine, "sync_engine", None), "pool", None)
        connections = GaugeMetricFamily(
            "kaizen_db_pool_connections",
            "Database connections of this replica's pool, by state.",
            labels=["state"],
        )
        capacity = GaugeMetricFamily(
            "kaizen_db_pool_capacity",
            "Connections this replica's pool may open (pool size plus overflow).",
        )
        if pool is not None and hasattr(pool, "checkedout"):
            connections.add_metric(["in_use"], pool.checkedout())
            connections.add_metric(["idle"], pool.checkedin())
            capacity.add_metric([], pool.size() + max(getattr(pool, "_max_overflow", 0), 0))
        yield connections
        yield capacity


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Shared())
        self._pool = _Pool()
        self.registry.register(self._pool)
        self.requests = Counter(
            "kaizen_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kaizen_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def watch_pool(self, engine: Any) -> None:
        """Report this SQLAlchemy (async) engine's pool at each scrape."""
        self._pool.engine = engine


class RequestMiddleware:
    """Request id in and out, metrics by route template, and a hard cap on body size."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        max_ingest_bytes: int,
        metrics_token: str | None = None,
    ):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # `/metrics` names organisations and gateways: with a token, only Prometheus reads it.
        self.metrics_authorization = f"Bearer {metrics_token}".encode() if metrics_token else None
        # Batches from sidecars and gateways (`…/ingest`) may be larger than a user's request.
        self.max_ingest_bytes = max_ingest_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        org_token = organization_id_var.set(None)
        status = 500
        started = time.perf_counter()

        limit = (
            self.max_ingest_bytes
            if str(scope.get("path", "")).endswith("/ingest")
            else self.max_body_bytes
        )
        declared = headers.get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Also an HTTPException, so FastAPI's body parsing re-raises it as it is.
                    raise PayloadTooLarge(f"request body over {limit} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if too_large:
                await _send(send_with_id, PayloadTooLarge(f"request body over {limit} bytes"))
            elif nul := _nul_in_url(scope):
                await _send(send_with_id, nul)
            elif self._metrics_refused(scope, headers):
                await _send(send_with_id, Unauthenticated("/metrics needs the metrics token"))
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)
            request_id_var.reset(token)
            organization_id_var.reset(org_token)

    def _metrics_refused(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        if self.metrics_authorization is None or scope.get("path") != "/metrics":
            return False
        given = headers.get(b"authorization", b"")
        return not secrets.compare_digest(given, self.metrics_authorization)


def _nul_in_url(scope: Scope) -> Invalid | None:
    """PostgreSQL text holds no NUL, so no path or query with one is valid: refused here
    for every route at once (a NUL reaching a query was a 500, found by the fuzzer)."""
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        field = "query"
    elif "\x00" in str(scope.get("path", "")):
        field = "path"
    else:
        return None
    message = f"{field}: must not contain NUL characters"
    return Invalid(message, details=[{"field": field, "message": "must not contain NUL"}])


async def _send(send: Send, refusal: KaizenError) -> None:
    """Answer `refusal` before the app sees the request (as its handler would)."""
    body = json.dumps(refusal.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
