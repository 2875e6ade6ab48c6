"""Fuzzing the sidecar's HTTP server (http_protocol.py) over real sockets: random bytes and
random-but-plausible requests never crash it, never get a 5xx, always end with the server
closing the connection once the client stops sending, and never leave it unable to serve
the next connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.sidecar.http_wire import WireServer, wire_server

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server() -> Iterator[WireServer]:
    with wire_server() as running:
        yield running


def _exchange(server: WireServer, data: bytes) -> bytes:
    """Send `data`, half-close, read until the server closes (a stuck server times out)."""
    with server.connect(timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early and closed: what it answered is still read below
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def _statuses(received: bytes) -> list[int]:
    """The status code of every response line the server wrote."""
    codes = []
    for line in received.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit():
            codes.append(int(line[9:12]))
    return codes


def _still_serves(server: WireServer) -> None:
    with server.connect(timeout=10) as sock:
        sock.sendall(b"GET /alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_never_crash_the_server(server: WireServer, data: bytes) -> None:
    received = _exchange(server, data)
    assert all(code < 500 for code in _statuses(received)), received[:300]
    _still_serves(server)


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20)
_METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "G€T", ""])
_TARGETS = st.one_of(
    st.builds(lambda p: "/" + p, st.text(max_size=60)),
    st.sampled_from(["*", "http://x/y", "/ext_authz/mcp", "/a?b=c#d", ""]),
)
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1", "http/1.1"])
_HEADER = st.tuples(
    st.one_of(_TOKEN, st.sampled_from(["Content-Length", "Transfer-Encoding", "Host", "Expect"])),
    st.one_of(st.text(max_size=40), st.sampled_from(["chunked", "0", "5", "-1", "100-continue"])),
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method, target, version = draw(_METHODS), draw(_TARGETS), draw(_VERSIONS)
    headers = draw(st.lists(_HEADER, max_size=8))
    body = draw(st.binary(max_size=2048))
    framing = draw(st.sampled_from(["length", "chunked", "wrong-length", "none"]))
    lines = [f"{method} {target} {version}", *(f"{k}: {v}" for k, v in headers)]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif framing == "wrong-length":
        lines.append(f"Content-Length: {len(body) + draw(st.integers(-5, 5))}")
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    head = "\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\r\n\r\n"
    return head + body


@FUZZ
@given(requests=st.lists(_requests(), min_size=1, max_size=5))
def test_plausible_requests_never_crash_the_server(
    server: WireServer, requests: list[bytes]
) -> None:
    received = _exchange(server, b"".join(requests))
    statuses = _statuses(received)
    assert all(code < 500 for code in statuses), received[:300]
    assert len(statuses) <= 2 * len(requests)  # an answer each, perhaps after a 100 Continue
    _still_serves(server)
