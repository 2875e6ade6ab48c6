"""The sidecar's HTTP/1.1 server on the wire: keep-alive, pipelining, chunked bodies, size
limits, slow clients, malformed and smuggling-shaped requests (http_protocol.py)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.unit.sidecar.http_wire import (
    BODY_LIMIT,
    MAX_HEAD,
    WireServer,
    body_of,
    closed,
    read_responses,
    wire_server,
)


@pytest.fixture(scope="module")
def server() -> Iterator[WireServer]:
    with wire_server() as running:
        yield running


def test_keep_alive_serves_several_requests_on_one_connection(server: WireServer) -> None:
    with server.connect() as sock:
        for n in range(3):
            sock.sendall(f"GET /r{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            [(status, headers, _)] = read_responses(sock, 1)
            assert status == 200
            assert "connection" not in headers
            assert body_of((status, headers, _))["target"] == f"/r{n}"


def test_pipelined_requests_are_answered_in_order(server: WireServer) -> None:
    requests = b"".join(
        f"POST /p{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{n}".encode()
        for n in range(10)  # more than max_pipelined (4): reading pauses, nothing is lost
    )
    with server.connect() as sock:
        sock.sendall(requests)
        responses = read_responses(sock, 10)
    assert [body_of(r)["target"] for r in responses] == [f"/p{n}" for n in range(10)]
    assert [body_of(r)["body"] for r in responses] == [str(n) for n in range(10)]


def test_chunked_body_is_decoded(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        [response] = read_responses(sock, 1)
    assert response[0] == 200
    assert body_of(response)["body"] == "hello world"


def test_http_1_0_without_keep_alive_is_closed_after_the_answer(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        [(status, headers, _)] = read_responses(sock, 1)
        assert status == 200
        assert headers["connection"] == "close"
        assert closed(sock)


def test_head_gets_headers_without_a_body(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            data += sock.recv(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length:" in first
    assert rest.startswith(b"HTTP/1.1 200")  # no body bytes between the two answers


def test_expect_100_continue_is_answered(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"ok")
        [response] = read_responses(sock, 1)
    assert body_of(response)["body"] == "ok"


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/9.9\r\n\r\n", 400, "malformed"),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431, "head over"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % n for n in range(30)) + b"\r\n",
            431,
            "header fields",
        ),
        (
            f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY_LIMIT + 1}\r\n\r\n".encode(),
            413,
            "body over",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{BODY_LIMIT + 1:x}\r\n".encode()
            + b"a" * (BODY_LIMIT + 1),
            413,
            "body over",
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400, "malformed"),
    ],
    ids=[
        "garbage",
        "version",
        "space-in-target",
        "space-in-header-name",
        "big-head",
        "many-headers",
        "declared-body",
        "chunked-body",
        "bad-chunk",
    ],
)
def test_bad_requests_get_a_4xx_and_the_connection_closes(
    server: WireServer, raw: bytes, status: int, words: str
) -> None:
    with server.connect() as sock:
        sock.sendall(raw)
        [response] = read_responses(sock, 1)
        assert response[0] == status
        assert words in str(body_of(response)["error"])
        assert response[1]["connection"] == "close"
        assert closed(sock)


def test_an_upgrade_is_ignored_and_the_connection_closes_after_the_answer(
    server: WireServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        )
        responses = read_responses(sock, 2)
        assert [r[0] for r in responses] == [200]
        assert closed(sock)


def test_a_header_line_without_end_is_cut_at_the_head_limit(server: WireServer) -> None:
    """The parser buffers an unfinished header field; the server bounds that buffer to the
    head limit plus one socket read (the loop reads at most 256 KiB at a time)."""
    with server.connect() as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 1_000_000)
        [response] = read_responses(sock, 1)
    assert response[0] == 431


def test_smuggled_request_behind_conflicting_framing_is_never_answered(server: WireServer) -> None:
    """Content-Length with Transfer-Encoding is how a request hides inside another's body:
    refused, and nothing after it on the connection is parsed."""
    with server.connect() as sock:
        sock.sendall(
            b"POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        responses = read_responses(sock, 2)
    assert [r[0] for r in responses] == [400]


def test_a_pipelined_request_after_a_bad_one_is_not_answered(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nBAD\r\n\r\nGET /never HTTP/1.1\r\n\r\n")
        responses = read_responses(sock, 3)
    assert [r[0] for r in responses] == [200, 400]
    assert body_of(responses[0])["target"] == "/ok"


def test_a_handler_failure_is_a_503_not_a_crash(server: WireServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        [response] = read_responses(sock, 1)
        assert response[0] == 503
        assert closed(sock)
    with server.connect() as sock:  # and the server goes on
        sock.sendall(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200


def test_slowloris_is_closed_after_the_request_timeout() -> None:
    with wire_server(request_timeout=0.3) as server, server.connect(timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        [response] = read_responses(sock, 1)
        assert response[0] == 408
        assert closed(sock)
        assert not server.connections or all(c._broken for c in server.connections)


def test_slow_body_is_closed_after_the_request_timeout() -> None:
    with wire_server(request_timeout=0.3) as server, server.connect(timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        [response] = read_responses(sock, 1)
        assert response[0] == 408
        assert closed(sock)


def test_a_later_request_that_stalls_is_closed_after_the_request_timeout() -> None:
    """The connection's one timer moves lazily (HttpProtocol._arm): after answered requests
    and an idle spell, a stalled request still gets its own timeout, not a later one."""
    with wire_server(request_timeout=0.4) as server, server.connect(timeout=30) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(sock, 1)[0][0] == 200
            time.sleep(0.25)  # the first request's timer fires meanwhile and finds no deadline
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        [response] = read_responses(sock, 1)
        assert response[0] == 408
        assert time.monotonic() - started < 5  # its own 0.4 s, not the 30 s idle timeout
        assert closed(sock)


def test_idle_keep_alive_connection_is_closed() -> None:
    with wire_server(idle_timeout=0.3) as server, server.connect(timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200
        assert closed(sock)  # without a word: nothing was asked


def test_requests_sent_before_a_half_close_are_all_answered(server: WireServer) -> None:
    """`printf '…' | nc`: the client's FIN arrives with its requests; each is answered."""
    with server.connect() as sock:
        sock.sendall(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nBAD\r\n\r\n"
        )
        sock.shutdown(socket.SHUT_WR)
        responses = read_responses(sock, 4)
        assert [r[0] for r in responses] == [200, 200, 400]
        assert [body_of(r)["target"] for r in responses[:2]] == ["/one", "/two"]
        assert closed(sock)
