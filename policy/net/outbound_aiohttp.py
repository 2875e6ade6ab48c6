"""An aiohttp client that only reaches what `policy.net.outbound.OutboundGuard` allows.

The providers' calls go over aiohttp (a quarter of httpx's CPU per request here), so they
need the guard `policy.net.outbound_http` gives httpx, with every one of its properties:

- every request URL passes `parse_target` as given (userinfo, backslashes, whitespace,
  numeric IPv4 forms, schemes) — in `GuardedSession.request`, before aiohttp strips the
  userinfo off it — and again as it is about to be connected (`GuardedConnector.connect`,
  which sees every request of the session, a redirect hop's included);
- a host name is resolved once per connection by `GuardedResolver` through the guard,
  which refuses when ANY address is not allowed, and the connection is dialled at the
  addresses it returned: one resolution for the check and the connection, so DNS rebinding
  has no window (aiohttp's DNS cache is off: every new connection asks the guard). TLS
  still runs against the URL's name (SNI and the certificate check), the Host header is
  the URL's, because only the dialled address comes from the resolver;
- aiohttp never asks the resolver about an IP literal, so `GuardedConnector.connect`
  checks a literal host itself before any connection is taken or made;
- no proxies: not from the environment (`trust_env=False`), not per request (the connector
  refuses a request that names one); no redirects (`allow_redirects=False` on every
  request); no cookie jar (one session serves every tenant's providers).

A connector, its resolver and its session belong to one guard. The session is made on
first use, inside the running event loop (aiohttp binds it to that loop).
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from policy.net.outbound import OutboundGuard, OutboundRefused, parse_target

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

# Numeric only: the address is the one the guard checked, nothing may look it up again.
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
# `parse_target` is a pure function of the URL text (10 to 35 µs a call, IDNA included),
# and a gateway calls a few provider URLs over and over: what passed is remembered by its
# text; a refusal is not (it raises, and is judged again next time). Addresses are never
# remembered here: every connection resolves and checks them.
_parsed = functools.lru_cache(maxsize=1024)(parse_target)


class GuardedResolver(AbstractResolver):
    """Resolves through the guard: every address checked, a refused one refuses them all."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._guard.addresses(host, port)
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": _NUMERIC,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector under the guard: names through `GuardedResolver`, IP literals checked
    here (aiohttp skips the resolver for them), every request's URL re-parsed, no proxy."""

    def __init__(self, guard: OutboundGuard, **kwargs: Any) -> None:
        for name in ("resolver", "use_dns_cache"):
            if name in kwargs:
                raise ValueError(f"a guarded connector sets its own {name}")
        super().__init__(resolver=GuardedResolver(guard), use_dns_cache=False, **kwargs)
        self.guard = guard

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  (aiohttp's connector signature)
    ) -> Connection:
        if req.proxy is not None:
            raise OutboundRefused("a guarded connection goes direct: no proxy")
        target = _parsed(str(req.url))
        if target.is_ip:
            await self.guard.addresses(target.host, target.port)
        return await super().connect(req, traces, timeout)


class GuardedSession:
    """What providers call: `request(...)` under the guard; one pooled aiohttp session."""

    def __init__(
        self, guard: OutboundGuard, *, limit: int = 500, ssl: ssl.SSLContext | bool = True
    ) -> None:
        self.guard = guard
        self._limit = limit
        self._ssl = ssl  # True: the system's trust store; a context for a private CA
        self._session: aiohttp.ClientSession | None = None

    def _current(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=GuardedConnector(self.guard, limit=self._limit, ssl=self._ssl),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return session

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  (aiohttp's per-request timeouts)
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The answer to one request; redirects are answers, never followed."""
        _parsed(url)  # as given: aiohttp moves userinfo out of the URL before connecting
        async with self._current().request(
            method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            yield response

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
