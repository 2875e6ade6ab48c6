"""The sidecar's spans over real sockets (HTTP ext_authz, /authz, AuthZEN, gRPC Check):
children of the caller's traceparent, carrying the decision id, outcome and organisation;
an allow for a caller without trace context hands its own traceparent upstream. With
traces off the servers are the plain ones: no span, no header read, none invented."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.grpc_server import start_grpc_server
from authz_sidecar.http_server import SidecarHttp, start_http_server
from policy.runtime import tracing
from tests.e2e.sidecar_procs import free_port
from tests.unit.sidecar.factory import ALICE, API_KEY, BOB, ORG, Keys, access_token
from tests.unit.sidecar.test_servers import GATEWAY_TOKEN, check_request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE}-{CALLER_SPAN}-01"


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


async def _http(authorizer: Authorizer) -> AsyncIterator[httpx.AsyncClient]:
    """The sidecar's HTTP server as `start_http_server` picks it (traces on or off)."""
    port = free_port()
    app = SidecarHttp(authorizer, max_body=1 << 20, gateway_token=GATEWAY_TOKEN)
    server = await start_http_server(app, "127.0.0.1", port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client
    server.close()
    await app.close_connections()
    await server.wait_closed()


@pytest.fixture
async def traced_http(
    spans: InMemorySpanExporter, authorizer: Authorizer
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _http(authorizer):
        yield client


def _one(spans: InMemorySpanExporter) -> ReadableSpan:
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


def _ids(span: ReadableSpan) -> tuple[str, str | None]:
    assert span.context is not None
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else None
    return f"{span.context.trace_id:032x}", parent


async def test_an_ext_authz_check_is_a_child_of_the_callers_span_with_its_decision(
    traced_http: httpx.AsyncClient, spans: InMemorySpanExporter, keys: Keys
) -> None:
    headers = {"authorization": f"Bearer {access_token(keys, ALICE)}", "traceparent": CALLER}
    allowed = await traced_http.post("/ext_authz/v1/agents/a/invoke", headers=headers)
    assert allowed.status_code == 200
    span = _one(spans)
    assert span.name == "ext_authz"
    assert _ids(span) == (TRACE, CALLER_SPAN)
    assert span.attributes is not None
    assert span.attributes[tracing.DECISION_ID] == allowed.headers["x-kaizen-decision-id"]
    assert span.attributes[tracing.OUTCOME] == "allow"
    assert span.attributes[tracing.ORGANIZATION_ID] == ORG
    assert span.attributes["url.path"] == "/v1/agents/a/invoke"
    assert span.attributes["http.response.status_code"] == 200
    # The caller's context goes on to the gateway as it came: nothing replaces it.
    assert "traceparent" not in allowed.headers
    # No credential, token or header value is an attribute.
    assert not any(
        keys_token in str(value)
        for value in span.attributes.values()
        for keys_token in (headers["authorization"][7:], GATEWAY_TOKEN)
    )


async def test_a_deny_is_traced_with_its_outcome_and_hands_no_context_on(
    traced_http: httpx.AsyncClient, spans: InMemorySpanExporter, keys: Keys
) -> None:
    denied = await traced_http.post(
        "/ext_authz/v1/agents/a/invoke",
        headers={"authorization": f"Bearer {access_token(keys, BOB)}"},
    )
    assert denied.status_code == 403
    span = _one(spans)
    assert span.attributes is not None
    assert span.attributes[tracing.DECISION_ID] == denied.headers["x-kaizen-decision-id"]
    assert span.attributes[tracing.OUTCOME] == "deny"
    assert _ids(span)[1] is None  # no caller context: a new trace
    assert "traceparent" not in denied.headers


async def test_an_allow_without_caller_context_hands_the_checks_span_upstream(
    traced_http: httpx.AsyncClient, spans: InMemorySpanExporter, keys: Keys
) -> None:
    for sent in ({}, {"traceparent": "not-a-traceparent"}):
        spans.clear()
        allowed = await traced_http.post(
            "/ext_authz/v1/agents/a/invoke",
            headers={"authorization": f"Bearer {access_token(keys, ALICE)}", **sent},
        )
        span = _one(spans)
        trace_id, parent = _ids(span)
        assert parent is None
        assert span.context is not None
        version, handed_trace, handed_span, _flags = allowed.headers["traceparent"].split("-")
        assert (version, handed_trace, handed_span) == (
            "00",
            trace_id,
            f"{span.context.span_id:016x}",
        )


async def test_probes_are_not_traced_and_authz_and_authzen_are(
    traced_http: httpx.AsyncClient, spans: InMemorySpanExporter, keys: Keys
) -> None:
    assert (await traced_http.get("/healthz")).status_code == 200
    assert (await traced_http.get("/metrics")).status_code == 200
    assert spans.get_finished_spans() == ()
    assert (await traced_http.get("/wp-admin/x1")).status_code == 404
    assert _one(spans).name == "GET unknown route"  # a scanner's paths are not span names
    spans.clear()
    nginx = await traced_http.post(
        "/authz",
        headers={
            "authorization": f"Bearer {access_token(keys, ALICE)}",
            "x-original-method": "POST",
            "x-original-uri": "/v1/agents/a/invoke",
            "traceparent": CALLER,
        },
    )
    assert nginx.status_code == 200
    assert _ids(_one(spans)) == (TRACE, CALLER_SPAN)
    spans.clear()
    batch = {
        "subject": {"type": "apikey", "id": "ci"},
        "evaluations": [
            {"action": {"name": "invoke"}, "resource": {"type": "agent", "id": "a"}},
            {"action": {"name": "invoke"}, "resource": {"type": "agent", "id": "b"}},
        ],
    }
    answer = await traced_http.post(
        "/access/v1/evaluations",
        json=batch,
        headers={"authorization": f"Bearer {GATEWAY_TOKEN}", "traceparent": CALLER},
    )
    assert answer.status_code == 200, answer.text
    ids = [e["context"]["decision_id"] for e in answer.json()["evaluations"]]
    finished = spans.get_finished_spans()
    server = next(s for s in finished if s.name == "POST /access/v1/evaluations")
    evaluations = [s for s in finished if s.name == "authzen evaluation"]
    assert server.context is not None
    assert _ids(server) == (TRACE, CALLER_SPAN)
    # One span per evaluation, each with its own decision, children of the request's.
    assert [s.attributes[tracing.DECISION_ID] for s in evaluations if s.attributes] == ids
    assert {_ids(s) for s in evaluations} == {(TRACE, f"{server.context.span_id:016x}")}


async def test_grpc_check_is_traced_from_the_original_requests_headers(
    spans: InMemorySpanExporter, authorizer: Authorizer, keys: Keys
) -> None:
    port = free_port()
    server = await start_grpc_server(authorizer, "127.0.0.1", port, 1 << 20)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            request = check_request("/v1/agents/a/invoke", access_token(keys))
            request.attributes.request.http.headers["traceparent"] = CALLER
            joined = await stub.Check(request)
            fresh = await stub.Check(check_request("/v1/agents/a/invoke", access_token(keys)))
    finally:
        await server.stop(None)
    first, second = spans.get_finished_spans()
    assert joined.status.code == code_pb2.OK
    assert _ids(first) == (TRACE, CALLER_SPAN)
    assert first.attributes is not None
    upstream = {h.header.key: h.header.value for h in joined.ok_response.headers}
    assert first.attributes[tracing.DECISION_ID] == upstream["x-kaizen-decision-id"]
    assert "traceparent" not in upstream
    handed = {h.header.key: h.header.value for h in fresh.ok_response.headers}
    assert second.context is not None
    assert handed["traceparent"].split("-")[1:3] == [
        f"{second.context.trace_id:032x}",
        f"{second.context.span_id:016x}",
    ]


async def test_with_traces_off_the_plain_server_answers_and_invents_no_traceparent(
    authorizer: Authorizer, keys: Keys
) -> None:
    assert not tracing.ENABLED
    async for http in _http(authorizer):
        answer = await http.post(
            "/ext_authz/v1/agents/a/invoke",
            headers={"authorization": f"Bearer {API_KEY}", "traceparent": CALLER},
        )
        fresh = await http.post(
            "/ext_authz/v1/agents/a/invoke",
            headers={"authorization": f"Bearer {access_token(keys, ALICE)}"},
        )
    assert json.loads(answer.content)["decision_id"]
    assert fresh.status_code == 200
    assert "traceparent" not in answer.headers
    assert "traceparent" not in fresh.headers
