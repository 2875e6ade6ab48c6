"""JSON logs carrying request and organisation ids, Prometheus metrics, request limits.

The middlewares are pure ASGI (no BaseHTTPMiddleware) so they add no task per request.
"""

from __future__ import annotations

import json
import secrets
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.errors import Invalid, KaizenError, PayloadTooLarge
from policy import logs
from policy.logs import organization_id_var, request_id_var


def configure_logging(level: str = "INFO", *, json_format: bool = True) -> None:
    """The control plane's logs, in the one format of every runtime (`policy/logs.py`)."""
    logs.configure_logging("control-plane", level, json_format=json_format)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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


class RequestMiddleware:
    """Request id in and out, metrics by route template, and a hard cap on body size."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, max_ingest_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
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
