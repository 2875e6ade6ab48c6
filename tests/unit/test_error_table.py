"""The one error table: every exception class of the control plane and the gateway takes its
statuses from it, every row has an HTTP and a gRPC column, and each runtime answers the row:
the control plane for its exceptions and for `policy` errors, the sidecar over HTTP and gRPC."""

from __future__ import annotations

import inspect
import json

import httpx
import pytest
from fastapi import FastAPI
from google.rpc import code_pb2

import control_plane.errors as control_plane_errors
import gateways.errors as gateway_errors  # noqa: TID251  (every runtime under test)
from authz_sidecar.grpc_server import check_response  # noqa: TID251  (every runtime under test)
from authz_sidecar.http_protocol import error_response  # noqa: TID251  (every runtime under test)
from authz_sidecar.verdict import Verdict  # noqa: TID251  (every runtime under test)
from control_plane.app import install_error_handlers
from control_plane.errors import KaizenError, PayloadTooLarge
from gateways.errors import GatewayError  # noqa: TID251  (every runtime under test)
from policy.errors import (
    ERROR_KINDS,
    ERROR_TABLE,
    BundleVerificationError,
    ErrorDetail,
    PolicyValidationError,
    grpc_code_for_http,
)


def _subclasses(base: type) -> list[type]:
    found, todo = [], [base]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def test_every_row_has_both_columns_and_a_unique_code() -> None:
    codes = [kind.code for kind in ERROR_KINDS]
    assert len(codes) == len(set(codes)) == len(ERROR_TABLE)
    for kind in ERROR_KINDS:
        assert 400 <= kind.http <= 599, kind
        assert code_pb2.Code.Value(kind.grpc) >= 0, kind  # a real google.rpc.Code name


def test_every_exception_class_answers_its_row() -> None:
    # Import every module that defines one, so __subclasses__ sees them all.
    import control_plane.services.mfa
    import control_plane.services.rego_sandbox
    import control_plane.services.sessions
    import control_plane.services.sso.provision  # noqa: F401

    classes = [
        *[c for c in vars(control_plane_errors).values() if inspect.isclass(c)],
        *_subclasses(KaizenError),
        *_subclasses(GatewayError),
        *[c for c in vars(gateway_errors).values() if inspect.isclass(c)],
    ]
    checked = 0
    for cls in {c for c in classes if issubclass(c, KaizenError | GatewayError)}:
        kind = ERROR_TABLE[cls.code]
        assert cls.status == kind.http, cls
        if issubclass(cls, KaizenError):
            assert cls.grpc_status == kind.grpc, cls
        checked += 1
    assert checked >= 25


def _app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


DETAIL: ErrorDetail = {
    "file": "policy.yaml",
    "document": 1,
    "field": "spec.rego",
    "line": 4,
    "column": 9,
    "message": "unexpected token",
}


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (control_plane_errors.NotFound("no such thing"), "not_found", 404),
        (control_plane_errors.RateLimited("slow down", retry_after=3), "rate_limited", 429),
        (PayloadTooLarge("request body over 10 bytes"), "payload_too_large", 413),
        (PolicyValidationError([DETAIL]), "invalid_policy", 422),
        (BundleVerificationError("signature does not verify"), "invalid_bundle", 422),
    ],
)
async def test_the_control_plane_answers_the_row(error: Exception, code: str, status: int) -> None:
    transport = httpx.ASGITransport(app=_app(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
        answer = await client.get("/boom")
    assert answer.status_code == status == ERROR_TABLE[code].http
    assert answer.json()["error"]["code"] == code
    if isinstance(error, PolicyValidationError):
        assert answer.json()["error"]["details"][0]["line"] == 4
        assert answer.json()["error"]["details"][0]["column"] == 9


@pytest.mark.parametrize("status", [400, 404, 405, 413, 422, 503])
def test_the_sidecar_answers_the_row_over_http(status: int) -> None:
    answered, _headers, body = error_response(status, "no")
    assert answered == status
    assert json.loads(body)["error"]["code"] == next(
        k.code for k in ERROR_TABLE.values() if k.http == status
    )


@pytest.mark.parametrize(
    ("status", "grpc"),
    [
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (429, "RESOURCE_EXHAUSTED"),
        (503, "UNAVAILABLE"),
    ],
)
def test_the_sidecar_denies_over_grpc_with_the_rows_code(status: int, grpc: str) -> None:
    verdict = Verdict(status, "deny", "d-1", ("no",), "1")
    response = check_response(verdict)
    assert response.status.code == code_pb2.Code.Value(grpc)
    assert grpc == grpc_code_for_http(status)
    assert response.denied_response.status.code == status
