"""Attacks on the sidecar's ext_authz transports: forged x-kaizen-* headers through a real
Envoy over HTTP (http_service → /ext_authz) and gRPC, and attacks on the sidecar's HTTP
server itself (request smuggling, slowloris, oversized bodies) against the real process.

The sidecar here runs without a gateway credential, so it signs no x-kaizen-decision: a
caller's forged one must then be removed, not passed on beside the sidecar's headers."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import ALICE, ORG, Keys, access_token, make_bundle, make_keys

MAX_BODY = 64 * 1024


@dataclass
class Front:
    keys: Keys
    http_port: int
    envoy: dict[str, str]  # transport -> Envoy URL


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    tmp: Path = tmp_path_factory.mktemp("ext-authz")
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
        stack.enter_context(
            procs.running(
                procs.start_sidecar(
                    tmp / "home",
                    grpc_port,
                    http_port,
                    KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                    KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                    KAIZEN_SIDECAR_MAX_BODY_BYTES=str(MAX_BODY),
                    KAIZEN_SIDECAR_HTTP_REQUEST_TIMEOUT_SECONDS="1",
                )
            )
        )
        urls = {}
        for transport in procs.TRANSPORTS:
            listen, admin = procs.free_port(), procs.free_port()
            config = procs.envoy_config(
                listen, admin, grpc_port, upstream, sidecar_http=http_port, transport=transport
            )
            stack.enter_context(procs.running(procs.start_envoy(config, tmp, admin)))
            urls[transport] = f"http://127.0.0.1:{listen}"
        yield Front(keys, http_port, urls)


@pytest.mark.parametrize("transport", procs.TRANSPORTS)
def test_forged_kaizen_headers_through_envoy_are_refused(front: Front, transport: str) -> None:
    forged = {
        "Authorization": f"Bearer {access_token(front.keys, ALICE)}",
        "X-Kaizen-Principal": "user:mallory@example.com",
        "X-Kaizen-Organization": "org-of-mallory",
        "X-Kaizen-Decision-Id": "f" * 32,
        "X-Kaizen-Decision": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyOm1hbGxvcnkifQ.forged",
        "X-Kaizen-Workspace": "prod",
    }
    response = httpx.post(
        f"{front.envoy[transport]}/v1/agents/support-bot/invoke", headers=forged, json={}
    )
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]  # what the upstream (the gateway) received
    assert seen["x-kaizen-principal"] == f"user:{ALICE}"
    assert seen["x-kaizen-organization"] == ORG
    assert seen["x-kaizen-decision-id"] != "f" * 32
    assert "x-kaizen-decision" not in seen  # this sidecar signs none: the forged one is gone
    assert "x-kaizen-workspace" not in seen
    assert set(seen) == {"x-kaizen-principal", "x-kaizen-organization", "x-kaizen-decision-id"}


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes to the sidecar's HTTP port, half-close, read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


def test_request_smuggling_to_the_sidecar_is_refused(front: Front) -> None:
    """A check hidden in another's body (Content-Length and Transfer-Encoding together) is
    never decided: the front request is refused and nothing after it is parsed."""
    token = access_token(front.keys, ALICE)
    hidden = (
        f"POST /ext_authz/v1/agents/support-bot/invoke HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    front_request = (
        b"POST /ext_authz/v1/agents/support-bot/invoke HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {len(hidden) + 5}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    received = _raw(front.http_port, front_request + hidden)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert received.count(b"HTTP/1.1 ") == 1
    assert b"x-kaizen-principal" not in received


def test_slowloris_against_the_sidecar_is_refused(front: Front) -> None:
    with socket.create_connection(("127.0.0.1", front.http_port), timeout=30) as sock:
        sock.sendall(b"POST /ext_authz/mcp HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 ")
    assert httpx.get(f"http://127.0.0.1:{front.http_port}/healthz").status_code == 200


def test_oversized_check_body_is_refused(front: Front) -> None:
    token = access_token(front.keys, ALICE)
    body = b"{" + b" " * MAX_BODY + b"}"
    head = (
        f"POST /ext_authz/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n"
    ).encode()
    received = _raw(front.http_port, head + body + b"\r\n0\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"x-kaizen-principal" not in received
