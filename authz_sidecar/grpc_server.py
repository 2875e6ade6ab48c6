"""Envoy ext_authz v3 over grpc.aio: a thin servicer around the Authorizer.

A deny is a normal CheckResponse (PERMISSION_DENIED / UNAUTHENTICATED with the HTTP
status, headers and JSON body Envoy sends back); a gRPC error means the sidecar failed,
and Envoy is configured (`failure_mode_allow: false`) to refuse the call then.
"""

from __future__ import annotations

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.mapping import HttpFacts
from authz_sidecar.verdict import Verdict
from policy.errors import grpc_code_for_http
from policy.runtime import tracing

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# The Check status of a denial: the gRPC column of the one error table for its HTTP status.
_CODES = {
    status: code_pb2.Code.Value(grpc_code_for_http(status))
    for status in (200, 400, 401, 403, 404, 413, 422, 429, 500, 503)
}


def _grpc_code(status: int) -> int:
    code = _CODES.get(status)
    return code if code is not None else int(code_pb2.Code.Value(grpc_code_for_http(status)))


def facts_from_check(request: external_auth_pb2.CheckRequest, max_body: int) -> HttpFacts:
    http = request.attributes.request.http
    body = http.raw_body or http.body.encode("utf-8", "surrogateescape")
    declared = http.headers.get("content-length", "")
    truncated = len(body) > max_body or (declared.isdigit() and int(declared) > len(body))
    address = request.attributes.source.address.socket_address.address
    return HttpFacts(
        method=http.method,
        path=http.path,
        headers=dict(http.headers),
        body=body[:max_body],
        source_ip=address or None,
        body_truncated=truncated,
    )


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
    )


# Built once: protobuf message construction is a good part of a Check's Python time.
_JSON = _header("content-type", "application/json")
_BEARER = _header("www-authenticate", 'Bearer realm="kaizen"')
_OK = status_pb2.Status(code=code_pb2.OK)


def check_response(verdict: Verdict) -> external_auth_pb2.CheckResponse:
    if verdict.allowed:
        upstream = verdict.upstream_headers()
        # Only the headers set here overwrite the caller's: a sidecar without a gateway
        # credential signs no x-kaizen-decision, so a caller's must be removed, not kept.
        ours = {k for k, _ in upstream}
        return external_auth_pb2.CheckResponse(
            status=_OK,
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=[_header(k, v) for k, v in upstream],
                headers_to_remove=[h for h in verdict.remove_headers if h not in ours],
            ),
        )
    headers = [_JSON, _header("x-kaizen-decision-id", verdict.decision_id)]
    if verdict.challenge is not None:
        headers.append(_header("www-authenticate", verdict.challenge))
    elif verdict.status == 401:
        headers.append(_BEARER)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=_grpc_code(verdict.status)),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=verdict.status),
            headers=headers,
            body=verdict.body_bytes().decode(),
        ),
    )


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, authorizer: Authorizer, max_body: int) -> None:
        self._authorizer = authorizer
        self._max_body = max_body

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        facts = facts_from_check(request, self._max_body)
        return check_response(await self._authorizer.check(facts))


class TracedAuthorizationServicer(AuthorizationServicer):
    """Check in a SERVER span, child of the original request's `traceparent` (the
    CheckRequest carries its headers); chosen once, only with traces on. Like the HTTP
    path, an allow for a caller without trace context hands the span's own traceparent on."""

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        carrier = {h: http.headers[h] for h in tracing.TRACE_HEADERS if h in http.headers}
        attributes = {
            "rpc.system": "grpc",
            "http.request.method": http.method,
            "url.path": http.path.split("?", 1)[0][:256],
        }
        parent = tracing.extract(carrier)
        with tracing.server_span("ext_authz", parent, **attributes):
            response = await super().Check(request, context)
            if response.status.code == code_pb2.OK and parent is None:
                own = tracing.traceparent()
                if own is not None:
                    response.ok_response.headers.append(_header("traceparent", own))
            return response


async def start_grpc_server(
    authorizer: Authorizer, host: str, port: int, max_body: int
) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", max_body + 64 * 1024),
        ]
    )
    servicer = TracedAuthorizationServicer if tracing.ENABLED else AuthorizationServicer
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        servicer(authorizer, max_body), server
    )
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server
