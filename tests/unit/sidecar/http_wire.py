"""The sidecar's HTTP protocol server (authz_sidecar/http_protocol.py) on its own uvloop
thread, with an echo handler, for the wire-level tests and the fuzz test: they talk to it
over real sockets, byte for byte, as Envoy, nginx or an attacker would."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvloop

from authz_sidecar.http_protocol import HttpProtocol, Limits, Request, Response, json_response
from authz_sidecar.http_server import reuse_port_socket
from tests.e2e.sidecar_procs import free_port

BODY_LIMIT = 1024
MAX_HEAD = 2048


async def echo(request: Request) -> Response:
    if request.target == "/boom":
        raise RuntimeError("a handler bug")
    return json_response(
        200,
        {
            "method": request.method,
            "target": request.target,
            "body": request.body.decode("latin-1"),
            "headers": request.headers,
        },
    )


class WireServer:
    def __init__(self, limits: Limits) -> None:
        self.port = free_port()
        self.connections: set[HttpProtocol] = set()
        self._limits = limits
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = uvloop.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def start() -> asyncio.Server:
            from authz_sidecar.http_protocol import serve

            sock = reuse_port_socket("127.0.0.1", self.port)
            return await serve(echo, self._limits, sock, self.connections)

        server = loop.run_until_complete(start())
        self._ready.set()
        loop.run_forever()
        server.close()
        for connection in list(self.connections):
            connection.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock


@contextmanager
def wire_server(**limits: float) -> Iterator[WireServer]:
    server = WireServer(
        Limits(
            body_limit=lambda path: BODY_LIMIT,
            max_head=MAX_HEAD,
            max_headers=20,
            max_pipelined=4,
            request_timeout=float(limits.get("request_timeout", 5.0)),
            idle_timeout=float(limits.get("idle_timeout", 30.0)),
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read `count` responses (Content-Length framed), or fewer if the server closes."""
    buffer = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            continue
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buffer += chunk
        out.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return out


def closed(sock: socket.socket) -> bool:
    """True once the server has closed its side (reads end), after any pending bytes."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def body_of(response: tuple[int, dict[str, str], bytes]) -> dict[str, object]:
    value = json.loads(response[2])
    assert isinstance(value, dict)
    return value
