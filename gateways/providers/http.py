"""Shared HTTP plumbing for providers: typed errors, an SSE reader, the clients.

Provider base URLs, HTTP tools and MCP servers are the tenant's word. Providers call over
aiohttp through a `GuardedSession` (policy/net/outbound_aiohttp.py: ~170 µs of CPU a request
here against httpx's 660 to 980); HTTP tools over httpx through `outbound_client`
(policy/net/outbound_http.py). Both go through the outbound guard (policy/net/outbound.py):
internal addresses refused per connection, the checked address dialled, no redirects, no
proxies. `new_client` is for the operator's own services (sidecar, control plane) only."""

from __future__ import annotations

import codecs
import json
import re
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import httpx
from policy.net.outbound import OutboundGuard, OutboundRefused
from policy.net.outbound_aiohttp import GuardedSession
from policy.net.outbound_http import guarded_client

from gateways.errors import ProviderError, ProviderTimeout

MAX_ERROR_TEXT = 300
# Without TCP_NODELAY, a POST's headers and body leave in two writes and Nagle's algorithm
# holds the second for the peer's delayed ACK: tens of milliseconds on some calls.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections // 5
    )


def new_client(max_connections: int = 500) -> httpx.AsyncClient:
    """The httpx client for the sidecar's checks of nested calls and `tools/list`."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(limits=_limits(max_connections), socket_options=NODELAY)
    )


def outbound_client(guard: OutboundGuard, max_connections: int = 500) -> httpx.AsyncClient:
    """The httpx client for the URLs of HTTP tools (no redirects); providers use a
    `GuardedSession`."""
    return guarded_client(guard, limits=_limits(max_connections), socket_options=NODELAY)


MAX_SSE_LINE = 1024 * 1024
_EOL = re.compile("\r\n|\r|\n")  # SSE line ends
_CONNECT_FAILURES = (aiohttp.ClientConnectorError, aiohttp.ClientConnectionResetError)
_PROTOCOL_FAILURES = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


def failure_kind(exc: BaseException) -> str:
    """A network failure as the provider errors have always named it (the httpx names,
    which the gateway's error answers carry), so moving to aiohttp changed no answer."""
    if isinstance(exc, _CONNECT_FAILURES):
        return "ConnectError"
    if isinstance(exc, _PROTOCOL_FAILURES):
        return "RemoteProtocolError"
    if isinstance(exc, aiohttp.ClientOSError):
        return "ReadError"
    return type(exc).__name__


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # httpx.Timeout(seconds): each of connect (pool wait included) and every read within
    # `seconds`; the run's own deadline bounds the whole call (executor.py).
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class HttpProvider:
    """Base of the network providers: calls through a `GuardedSession` and maps failures."""

    name = "http"

    def __init__(
        self, base_url: str, headers: Mapping[str, str], session: GuardedSession | None = None
    ):
        self._base_url = base_url.rstrip("/")
        self._headers = {**headers, "content-type": "application/json"}
        self._session = session or GuardedSession(OutboundGuard(), limit=200)
        self._owns_session = session is None

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.close()

    async def post_json(self, path: str, body: dict[str, Any], seconds: float) -> Any:
        try:
            async with self._session.request(
                "POST",
                self._base_url + path,
                data=_encode(body),
                headers=self._headers,
                timeout=_timeout(seconds),
            ) as response:
                status, content = response.status, await response.read()
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (and ClientErrors)
            raise ProviderTimeout(f"{self.name} did not answer within {seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{self.name} unreachable: {failure_kind(exc)}") from None
        except OutboundRefused as refused:
            raise ProviderError(f"{self.name} base_url refused: {refused.message}") from None
        if status >= 400:
            text = content.decode(errors="replace")
            raise ProviderError(_status_message(self.name, status, text))
        try:
            return json.loads(content)
        except ValueError:
            raise ProviderError(f"{self.name} answered something that is not JSON") from None

    @asynccontextmanager
    async def post_sse(
        self, path: str, body: dict[str, Any], seconds: float
    ) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """Yields an iterator of (event, data) pairs; maps errors like `post_json`."""
        async with AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(
                    self._session.request(
                        "POST",
                        self._base_url + path,
                        data=_encode(body),
                        headers={**self._headers, "accept": "text/event-stream"},
                        timeout=_timeout(seconds),
                    )
                )
            except TimeoutError:
                raise ProviderTimeout(f"{self.name} did not answer within {seconds:g} s") from None
            except aiohttp.ClientError as exc:
                raise ProviderError(f"{self.name} unreachable: {failure_kind(exc)}") from None
            except OutboundRefused as refused:
                raise ProviderError(f"{self.name} base_url refused: {refused.message}") from None
            # Leaving the stack releases the response: a stream not read to its end closes
            # its connection rather than drain it.
            if response.status >= 400:
                text = (await self._read_error(response, seconds)).decode(errors="replace")
                raise ProviderError(_status_message(self.name, response.status, text))
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                raise ProviderError(f"{self.name} did not answer with an event stream")
            yield self._events(response, seconds)

    async def _read_error(self, response: aiohttp.ClientResponse, seconds: float) -> bytes:
        try:
            return await response.read()
        except TimeoutError:
            raise ProviderTimeout(f"{self.name} stalled while streaming ({seconds:g} s)") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{self.name} stream broke: {failure_kind(exc)}") from None

    async def _events(
        self, response: aiohttp.ClientResponse, seconds: float
    ) -> AsyncIterator[tuple[str, str]]:
        event, data = "", list[str]()
        try:
            async for line in self._lines(response):
                if not line:
                    if data:
                        yield event or "message", "\n".join(data)
                    event, data = "", list[str]()
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
            if data:
                yield event or "message", "\n".join(data)
        except TimeoutError:
            raise ProviderTimeout(f"{self.name} stalled while streaming ({seconds:g} s)") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{self.name} stream broke: {failure_kind(exc)}") from None

    async def _lines(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """The stream's lines (CR, LF or CRLF ends), refusing one longer than MAX_SSE_LINE
        as soon as it is, not after buffering it whole."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        async for chunk in response.content.iter_any():
            text = pending + decoder.decode(chunk)
            # A CR at the end may be the first half of a CRLF: keep it for the next chunk.
            cut = len(text) - 1 if text.endswith("\r") else len(text)
            lines = _EOL.split(text[:cut])
            pending = lines.pop() + text[cut:]
            if len(pending) > MAX_SSE_LINE:
                raise ProviderError(f"{self.name} sent an oversized event")
            for line in lines:
                if len(line) > MAX_SSE_LINE:
                    raise ProviderError(f"{self.name} sent an oversized event")
                yield line
        tail = pending + decoder.decode(b"", final=True)
        for line in _EOL.split(tail) if tail else ():
            yield line


def load_json(provider: str, data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ProviderError(f"{provider} streamed something that is not JSON") from None


def _status_message(provider: str, status: int, text: str) -> str:
    detail = ""
    try:
        body = json.loads(text)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            detail = str(error.get("message", ""))
        elif isinstance(error, str):
            detail = error
    except ValueError:
        pass
    detail = detail[:MAX_ERROR_TEXT]
    return f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
