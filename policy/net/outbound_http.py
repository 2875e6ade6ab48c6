"""HTTP clients that only reach what `policy.net.outbound.OutboundGuard` allows.

The platform speaks two HTTP stacks: `httpx` (webhooks, providers, HTTP tools) and `httpx2`
(Authlib's OIDC client, the `mcp` SDK). Each gets a transport that

- passes every request URL — the first and every redirect hop — through `parse_target`;
- resolves the host inside the connection pool's network backend, checks every address,
  and dials the checked address itself: the check and the connection use one resolution, so
  DNS rebinding has no window. TLS still runs against the URL's host name (SNI and the
  certificate check) and the Host header is untouched, because only the dialled address
  changes;
- ignores proxy environment variables (`trust_env=False`): a proxy would do its own
  resolution, after our check.

Redirects are off unless a caller asks for them (`max_redirects`); when on, each hop goes
through the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from policy.net.outbound import OutboundGuard, OutboundRefused, parse_target


class _PinnedBackend:
    """A network backend (httpcore or httpcore2) that dials only checked addresses."""

    def __init__(self, guard: OutboundGuard, inner: Any) -> None:
        self._guard, self._inner = guard, inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's backend signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        addresses = await self._guard.addresses(host, port)
        options = list(socket_options or ())
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=options,
                )
            except Exception as exc:  # the backend's ConnectError/ConnectTimeout: try the next
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, *args: Any, **kwargs: Any) -> Any:
        raise OutboundRefused("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pin(pool: Any, guard: OutboundGuard) -> None:
    # The pool hands its backend to every connection it opens; replacing it before the first
    # request puts the check under every connection (the versions are pinned exactly).
    pool._network_backend = _PinnedBackend(guard, pool._network_backend)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """`httpx` transport under the outbound guard."""

    def __init__(self, guard: OutboundGuard, **kwargs: Any) -> None:
        if kwargs.get("proxy") is not None or kwargs.get("uds") is not None:
            raise ValueError("a guarded transport connects directly: no proxy, no unix socket")
        kwargs["trust_env"] = False
        super().__init__(**kwargs)
        assert isinstance(self._pool, httpcore.AsyncConnectionPool)
        _pin(self._pool, guard)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parse_target(str(request.url))
        return await super().handle_async_request(request)


def guarded_client(
    guard: OutboundGuard, *, max_redirects: int = 0, **kwargs: Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` that reaches only what `guard` allows."""
    transport_options = {
        k: kwargs.pop(k) for k in ("limits", "socket_options", "verify", "retries") if k in kwargs
    }
    return httpx.AsyncClient(
        transport=GuardedTransport(guard, **transport_options),
        trust_env=False,
        follow_redirects=max_redirects > 0,
        max_redirects=max(max_redirects, 0),
        **kwargs,
    )


def guarded_httpx2_transport(guard: OutboundGuard, **kwargs: Any) -> Any:
    """The same guard for `httpx2` (Authlib's OIDC client and the `mcp` SDK use it)."""
    import httpcore2
    import httpx2

    class GuardedTransport2(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            parse_target(str(request.url))
            return await super().handle_async_request(request)

    kwargs["trust_env"] = False
    transport = GuardedTransport2(**kwargs)
    pool = transport._pool
    assert isinstance(pool, httpcore2.AsyncConnectionPool)
    _pin(pool, guard)
    return transport


def guarded_httpx2_client(guard: OutboundGuard, *, max_redirects: int = 0, **kwargs: Any) -> Any:
    """An `httpx2.AsyncClient` that reaches only what `guard` allows."""
    import httpx2

    transport_options = {k: kwargs.pop(k) for k in ("limits", "verify") if k in kwargs}
    return httpx2.AsyncClient(
        transport=guarded_httpx2_transport(guard, **transport_options),
        trust_env=False,
        follow_redirects=max_redirects > 0,
        max_redirects=max(max_redirects, 0),
        **kwargs,
    )
