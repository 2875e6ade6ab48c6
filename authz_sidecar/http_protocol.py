"""The sidecar's HTTP/1.1 wire protocol: llhttp (httptools) on an asyncio (uvloop) loop.

A raw `asyncio.Protocol` rather than streams or an ASGI stack: every proxied call makes
one ext_authz request here, so the per-request cost is the product. What it guarantees:

- keep-alive and pipelining: requests on one connection are answered strictly in order,
  one at a time; at most `max_pipelined` parsed requests wait, then reading pauses;
- Content-Length and chunked bodies (the parser decodes chunking), `Expect: 100-continue`;
- limits: a head over `max_head` bytes or `max_headers` fields is 431 (an unfinished
  header field, which the parser buffers, is cut at `max_head` plus one socket read), a
  body over the route's limit is 413 (before it is read when Content-Length says so);
- slow clients: a request must be complete within `request_timeout` of its first byte
  (else 408 and close), an idle keep-alive connection is closed after `idle_timeout`;
- anything the parser refuses (bad request line, bad chunking, smuggling-shaped framing
  such as Content-Length with Transfer-Encoding) is a 400 and the connection closes.

After a refusal nothing more is parsed from the connection: its framing can no longer be
trusted, so a request hidden behind a bad one is never answered. The refusal is written,
the connection half-closed and further bytes drained for LINGER_SECONDS (closing with
unread bytes would reset the connection and could destroy the refusal before it is read).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httptools
import orjson

from policy.errors import kind_for_http

log = logging.getLogger(__name__)

Response = tuple[int, list[tuple[str, str]], bytes]
LINGER_SECONDS = 2.0  # how long a refused connection's further bytes are drained, at most

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class Request:
    method: str
    target: str  # the request-target as sent: path and query
    headers: dict[str, str]  # names lowercase; repeated fields joined with ", "
    body: bytes
    peer_ip: str | None


@dataclass(frozen=True, slots=True)
class Limits:
    body_limit: Callable[[str], int]  # the largest body the route at this path accepts
    max_head: int = 32 * 1024
    max_headers: int = 100
    max_pipelined: int = 32
    request_timeout: float = 10.0
    idle_timeout: float = 120.0  # above Envoy's upstream idle_timeout: Envoy closes first


Handler = Callable[[Request], Awaitable[Response]]


def json_response(
    status: int, value: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = orjson.dumps(value)  # compact, UTF-8
    return status, [("content-type", "application/json"), *(headers or [])], body


def error_response(status: int, message: str) -> Response:
    """The error body every runtime answers: the code from the one error table."""
    return json_response(
        status, {"error": {"code": kind_for_http(status).code, "message": message}}
    )


def encode_response(response: Response, *, close: bool, head_only: bool = False) -> bytes:
    status, headers, body = response
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    # Values come from verified credentials, but never let one split the response.
    lines.extend(f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ')}" for k, v in headers)
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head if head_only else head + body


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    message: str


class HttpProtocol(asyncio.Protocol):
    """One connection. The parser calls back into it (httptools' callback protocol)."""

    def __init__(self, handler: Handler, limits: Limits, connections: set[HttpProtocol]) -> None:
        self._handler = handler
        self._limits = limits
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._peer_ip: str | None = None
        self._queue: deque[tuple[Request, bool] | _Failure] = deque()
        self._worker: asyncio.Task[None] | None = None
        # One timer per connection, moved lazily (_arm): `_deadline`/`_on_deadline` say what
        # is due; the armed handle may fire earlier than that and then re-arms itself.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._on_deadline: Callable[[], None] | None = None
        self._broken = False  # a refusal is queued: read nothing more
        self._paused = False
        self._writable: asyncio.Future[None] | None = None
        self._headers_done = False
        self._eof = False
        self._stalled = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._header_count = 0
        self._body = bytearray()
        self._body_limit = 0
        self._in_message = False
        self._progress = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer_ip = peer[0] if isinstance(peer, tuple) else None
        self._connections.add(self)
        self._arm(self._limits.idle_timeout, self._on_idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._disarm()
        if self._timer is not None:  # nothing is due any more: let the protocol go now
            self._timer.cancel()
            self._timer = None
        # A check under way is not cancelled: it may have reserved budget or used a grant,
        # and must finish (and be logged) as one; its answer is then dropped.
        self._queue.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def eof_received(self) -> bool | None:
        """The client is done sending: answer what is queued, then close."""
        self._eof = True
        if self._worker is not None and not self._worker.done():
            return True  # keep the transport open; _serve closes it when the queue is empty
        return None  # nothing left to answer: close now

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        self._progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request itself is served as plain HTTP/1.1 (the Upgrade ignored, as RFC
            # 9110 allows); what follows it would be another protocol, so the connection
            # closes after the answer.
            self._refuse(0, "")
            return
        except (httptools.HttpParserError, _Refused) as exc:
            # httptools wraps what a callback raises: the limit refusal is the cause.
            refused = exc if isinstance(exc, _Refused) else exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, str(refused))
            else:
                self._refuse(400, f"malformed HTTP request: {str(exc)[:120]}")
            return
        # The parser buffers a header field until it ends: bound what it may hold.
        if self._in_message and not self._headers_done:
            self._stalled = 0 if self._progress else self._stalled + len(data)
            if self._stalled > self._limits.max_head:
                self._refuse(431, f"request head over {self._limits.max_head} bytes")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_message = True
        self._headers_done = False
        self._progress = True
        self._arm(self._limits.request_timeout, self._on_request_timeout)

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            raise _Refused(431, f"more than {self._limits.max_headers} header fields")
        self._count_head(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._limits.max_head:
            raise _Refused(431, f"request head over {self._limits.max_head} bytes")

    def on_headers_complete(self) -> None:
        self._progress = True
        self._headers_done = True
        target = self._url.decode("latin-1")
        self._body_limit = self._limits.body_limit(target.split("?", 1)[0])
        declared = self._headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._body_limit:
            raise _Refused(413, f"body over {self._body_limit} bytes")
        # Only when nothing is being answered: an interim response must not overtake the
        # answer to an earlier pipelined request (the client sends the body anyway).
        idle = not self._queue and (self._worker is None or self._worker.done())
        if self._headers.get("expect", "").lower() == "100-continue" and idle and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > self._body_limit:
            raise _Refused(413, f"body over {self._body_limit} bytes")
        self._body += body

    def on_message_complete(self) -> None:
        self._progress = True
        self._disarm()
        method = self._parser.get_method().decode("latin-1")
        request = Request(
            method, self._url.decode("latin-1"), self._headers, bytes(self._body), self._peer_ip
        )
        keep_alive = self._parser.should_keep_alive()
        self._in_message = False
        self._reset_message()
        self._enqueue((request, keep_alive))
        if len(self._queue) >= self._limits.max_pipelined and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    # -- serving -----------------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        self._broken = True
        self._disarm()
        if self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        self._enqueue(_Failure(status, message))

    def _enqueue(self, item: tuple[Request, bool] | _Failure) -> None:
        self._queue.append(item)
        if self._worker is None or self._worker.done():
            self._worker = self._loop.create_task(self._serve())

    async def _serve(self) -> None:
        transport = self._transport
        assert transport is not None
        while self._queue and not transport.is_closing():
            item = self._queue.popleft()
            if isinstance(item, _Failure):
                if item.status == 0:
                    self._linger(transport)
                    return
                transport.write(
                    encode_response(error_response(item.status, item.message), close=True)
                )
                self._linger(transport)
                return
            request, keep_alive = item
            if self._paused and not self._broken and len(self._queue) < self._limits.max_pipelined:
                transport.resume_reading()
                self._paused = False
            try:
                response = await self._handler(request)
            except Exception:
                # The handlers deny rather than raise; this is a bug, not a request's fault.
                log.exception("HTTP handler failed on %s %s", request.method, request.target[:100])
                response = error_response(503, "the sidecar failed to answer; try again")
                keep_alive = False
            if transport.is_closing():
                return
            close = not keep_alive
            transport.write(
                encode_response(response, close=close, head_only=request.method == "HEAD")
            )
            if close:
                transport.close()
                return
            if self._writable is not None:
                await self._writable
        if self._eof:
            transport.close()
        elif not self._queue and not self._in_message and not transport.is_closing():
            self._arm(self._limits.idle_timeout, self._on_idle_timeout)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Half-close, then drain and drop what the client still sends, briefly.

        Closing with unread bytes makes the kernel send a reset, which can destroy the
        refusal before the client reads it; nothing read from here on is parsed."""
        if self._eof or not transport.can_write_eof():
            transport.close()  # the client sent all it will: nothing left to drain
            return
        transport.write_eof()
        if self._paused:
            transport.resume_reading()
            self._paused = False
        self._arm(LINGER_SECONDS, self.close)

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call `callback` in `seconds`, unless re-armed or disarmed first.

        Every request arms twice (its own timeout, then the idle one) and disarms once.
        Instead of a timer made and cancelled each time, the deadline moves and the armed
        handle stays when it would fire no later: when it fires before the deadline it
        re-arms for it (at most once per `request_timeout` on a busy connection)."""
        deadline = self._loop.time() + seconds
        self._deadline, self._on_deadline = deadline, callback
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self._loop.call_at(deadline, self._fire), deadline

    def _disarm(self) -> None:
        self._on_deadline = None  # an armed handle fires and finds nothing due

    def _fire(self) -> None:
        self._timer = None
        callback = self._on_deadline
        if callback is None:
            return
        if self._loop.time() < self._deadline:  # the deadline moved on since it was armed
            self._timer = self._loop.call_at(self._deadline, self._fire)
            self._timer_at = self._deadline
            return
        self._on_deadline = None
        callback()

    def _on_request_timeout(self) -> None:
        if self._paused and not self._broken:
            # Reading is paused by us (pipelined requests waiting): not the client's delay.
            self._arm(self._limits.request_timeout, self._on_request_timeout)
            return
        self._refuse(408, f"request not complete within {self._limits.request_timeout:g} s")

    def _on_idle_timeout(self) -> None:
        if not self._queue and (self._worker is None or self._worker.done()):
            self.close()


async def serve(
    handler: Handler,
    limits: Limits,
    sock: Any,
    connections: set[HttpProtocol],
) -> asyncio.Server:
    """Serve on a listening socket (shared between worker processes by SO_REUSEPORT)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(handler, limits, connections), sock=sock, backlog=1024
    )
