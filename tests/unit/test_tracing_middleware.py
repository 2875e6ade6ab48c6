"""policy/runtime/tracing_asgi.py in the apps that use it: a SERVER span per request, named
by route template, child of the caller's traceparent, with the organisation and request id
the app set, the status, ERROR on a 5xx; probes left out; added only with traces on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from control_plane.app import create_app
from policy.runtime import tracing
from policy.runtime.logs import organization_id_var, request_id_var
from policy.runtime.tracing_asgi import TracingMiddleware

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        organization_id_var.set("org-7")
        return {"name": name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(TracingMiddleware)
    return app


async def test_a_request_is_a_server_span_named_by_its_route(
    spans: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        request_id_var.set("req-1")
        assert (await client.get("/v1/things/a", headers={"traceparent": CALLER})).is_success
        assert (await client.get("/healthz")).is_success
        assert (await client.get("/boom")).status_code == 500
    served, failed = spans.get_finished_spans()
    assert served.name == "GET /v1/things/{name}"
    assert served.kind is SpanKind.SERVER
    assert served.context is not None
    assert served.parent is not None
    assert f"{served.context.trace_id:032x}" == CALLER.split("-")[1]
    assert f"{served.parent.span_id:016x}" == CALLER.split("-")[2]
    assert served.attributes == {
        "http.request.method": "GET",
        "url.path": "/v1/things/a",
        "http.route": "/v1/things/{name}",
        "kaizen.organization_id": "org-7",
        "kaizen.request_id": "req-1",
        "http.response.status_code": 200,
    }
    assert failed.name == "GET /boom"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.parent is None


def test_the_control_plane_adds_it_only_with_traces_on(spans: InMemorySpanExporter) -> None:
    def traced(app: FastAPI) -> bool:
        return any(m.cls is TracingMiddleware for m in app.user_middleware)

    assert traced(create_app())
    tracing.use_provider(None)
    assert not traced(create_app())
