"""Shared HTTP plumbing for providers: one client, typed errors, an SSE reader.

Provider base URLs, HTTP tools and MCP servers are the tenant's word: `outbound_client`
goes through the outbound guard (policy/outbound.py) — internal addresses refused per
connection, the checked address dialled. `new_client` is for the operator's own services
(sidecar, control plane) only."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from policy.outbound import OutboundGuard, OutboundRefused
from policy.outbound_http import guarded_client

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
    """The HTTP client for the operator's services: the sidecar and executions ingest."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(limits=_limits(max_connections), socket_options=NODELAY)
    )


def outbound_client(guard: OutboundGuard, max_connections: int = 500) -> httpx.AsyncClient:
    """The HTTP client for what tenants name: providers and HTTP tools (no redirects)."""
    return guarded_client(guard, limits=_limits(max_connections), socket_options=NODELAY)


MAX_SSE_LINE = 1024 * 1024


class HttpProvider:
    """Base of the network providers: owns an httpx.AsyncClient and maps failures."""

    name = "http"

    def __init__(
        self, base_url: str, headers: Mapping[str, str], client: httpx.AsyncClient | None = None
    ):
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._client = client or outbound_client(OutboundGuard(), 200)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def post_json(self, path: str, body: dict[str, Any], seconds: float) -> Any:
        try:
            response = await self._client.post(
                self._base_url + path,
                json=body,
                headers=self._headers,
                timeout=httpx.Timeout(seconds),
            )
        except httpx.TimeoutException:
            raise ProviderTimeout(f"{self.name} did not answer within {seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name} unreachable: {type(exc).__name__}") from None
        except OutboundRefused as refused:
            raise ProviderError(f"{self.name} base_url refused: {refused.message}") from None
        if response.status_code >= 400:
            raise ProviderError(_status_message(self.name, response.status_code, response.text))
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name} answered something that is not JSON") from None

    @asynccontextmanager
    async def post_sse(
        self, path: str, body: dict[str, Any], seconds: float
    ) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """Yields an iterator of (event, data) pairs; maps errors like `post_json`."""
        request = self._client.build_request(
            "POST",
            self._base_url + path,
            json=body,
            headers={**self._headers, "accept": "text/event-stream"},
            timeout=httpx.Timeout(seconds),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise ProviderTimeout(f"{self.name} did not answer within {seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name} unreachable: {type(exc).__name__}") from None
        except OutboundRefused as refused:
            raise ProviderError(f"{self.name} base_url refused: {refused.message}") from None
        try:
            if response.status_code >= 400:
                text = (await response.aread()).decode(errors="replace")
                raise ProviderError(_status_message(self.name, response.status_code, text))
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                raise ProviderError(f"{self.name} did not answer with an event stream")
            yield self._events(response, seconds)
        finally:
            await response.aclose()

    async def _events(
        self, response: httpx.Response, seconds: float
    ) -> AsyncIterator[tuple[str, str]]:
        event, data = "", list[str]()
        try:
            async for line in response.aiter_lines():
                if len(line) > MAX_SSE_LINE:
                    raise ProviderError(f"{self.name} sent an oversized event")
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
        except httpx.TimeoutException:
            raise ProviderTimeout(f"{self.name} stalled while streaming ({seconds:g} s)") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name} stream broke: {type(exc).__name__}") from None


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
