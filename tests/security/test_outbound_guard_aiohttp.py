"""The outbound guard on aiohttp (policy/net/outbound_aiohttp.py: the providers'
client) under every attack the httpx guard's tests make (test_outbound_guard.py): URL
tricks, numeric and IPv6 address forms, names resolving inside, a name with one public and
one internal address, DNS rebinding between check and connect, redirects, proxies from the
environment or per request, TLS on the name. Against a real local server on 127.0.0.1
(reachable only with the operator's allowance) that records what reached it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from policy.net.outbound import OutboundGuard, OutboundRefused
from policy.net.outbound_aiohttp import (
    GuardedConnector,
    GuardedSession,
)
from tests.security.outbound_support import free_port, local_server, self_signed

LOOPBACK_ALLOWED = "127.0.0.1/32"
# Short: a protection removed shows as a connection attempt that fails some other way.
TIMEOUT = aiohttp.ClientTimeout(total=3, connect=2, sock_read=2)


class ScriptedDns:
    """A resolver answering from a script, one answer per lookup, counting lookups."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


@asynccontextmanager
async def guarded(guard: OutboundGuard) -> AsyncIterator[GuardedSession]:
    session = GuardedSession(guard)
    try:
        yield session
    finally:
        await session.close()


@asynccontextmanager
async def raw(guard: OutboundGuard) -> AsyncIterator[aiohttp.ClientSession]:
    """The guarded connector under a session of the caller's own making: what a hop of a
    followed redirect, or a caller that forgot the session's settings, would get."""
    async with aiohttp.ClientSession(connector=GuardedConnector(guard)) as session:
        yield session


async def get(session: GuardedSession, url: str) -> tuple[int, str]:
    async with session.request("GET", url, timeout=TIMEOUT) as response:
        return response.status, await response.text()


@pytest.mark.parametrize(
    "url",
    [
        "http://user@evil.example@127.0.0.1/",
        "http://evil.example@127.0.0.1/",
        "http://evil.example\\@127.0.0.1/",
        "http://evil.example%40127.0.0.1@169.254.169.254/",
        "http://:@169.254.169.254/",
    ],
)
async def test_userinfo_host_tricks_are_refused(url: str) -> None:
    async with local_server() as server:
        url = url.replace("127.0.0.1/", f"127.0.0.1:{server.port}/")
        async with guarded(OutboundGuard.from_setting(LOOPBACK_ALLOWED)) as session:
            with pytest.raises(OutboundRefused, match=r"user@host|backslashes"):
                await get(session, url)
        assert server.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0x7f000001/",  # hex
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",  # octal
        "http://017700000001/",
        "http://127.1/",  # short form
        "http://2852039166/",  # decimal 169.254.169.254
        "http://0xa9.0xfe.0xa9.0xfe/",
    ],
)
async def test_numeric_ip_forms_are_refused(url: str) -> None:
    """Refused by the guard itself, in the session and at the connection (a redirect hop
    reaches only the latter), not left to aiohttp's own check."""
    async with local_server() as server:
        port_url = url.rstrip("/") + f":{server.port}/"
        guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED)
        async with guarded(guard) as session:
            with pytest.raises(OutboundRefused, match="non-canonical"):
                await get(session, port_url)
        async with raw(guard) as bare:
            with pytest.raises(OutboundRefused, match="non-canonical"):
                await bare.get(port_url, timeout=TIMEOUT)
        assert server.seen == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fc00::1]/", "private"),
        ("http://[::]/", "unspecified"),
        ("http://127.0.0.1/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://100.100.100.200/", "metadata"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
async def test_internal_address_literals_are_refused(url: str, reason: str) -> None:
    """aiohttp never asks the resolver about an IP literal: the connector checks it."""
    async with guarded(OutboundGuard()) as session:
        with pytest.raises(OutboundRefused, match=reason):
            await get(session, url)


async def test_loopback_literal_is_refused_before_reaching_a_live_server() -> None:
    async with local_server() as server:
        async with guarded(OutboundGuard()) as session:
            with pytest.raises(OutboundRefused, match="loopback"):
                await get(session, f"http://127.0.0.1:{server.port}/internal")
            with pytest.raises(OutboundRefused, match="loopback"):
                await get(session, f"http://[::ffff:127.0.0.1]:{server.port}/internal")
        assert server.seen == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["127.0.0.1"], "loopback"),
        (["169.254.169.254"], "metadata"),
        (["::1"], "loopback"),
        (["10.20.30.40"], "private"),
        (["::ffff:127.0.0.1"], "loopback"),
    ],
)
async def test_name_resolving_inside_is_refused(answer: list[str], reason: str) -> None:
    async with local_server() as server:
        dns = ScriptedDns(answer)
        async with guarded(OutboundGuard(resolver=dns)) as session:
            with pytest.raises(OutboundRefused, match=reason):
                await get(session, f"http://inside.example:{server.port}/internal")
        assert dns.lookups == ["inside.example"]
        assert server.seen == []


async def test_localhost_is_refused_by_default_and_reached_with_the_allowance() -> None:
    """The system resolver, through the guard: `localhost` is loopback."""
    async with local_server() as server:
        url = f"http://localhost:{server.port}/internal"
        async with guarded(OutboundGuard()) as session:
            with pytest.raises(OutboundRefused, match="loopback"):
                await get(session, url)
        assert server.seen == []
        async with guarded(OutboundGuard.from_setting(LOOPBACK_ALLOWED)) as session:
            assert await get(session, url) == (200, "hello from 127.0.0.1")
        assert [s.host for s in server.seen] == [f"localhost:{server.port}"]


async def test_name_with_a_public_and_an_internal_address_is_refused() -> None:
    """A public address first does not make the internal one a fallback: all are refused."""
    async with local_server() as server:
        dns = ScriptedDns(["93.184.216.34", "127.0.0.1"])
        async with guarded(OutboundGuard(resolver=dns)) as session:
            with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1 is a loopback address"):
                await get(session, f"http://mixed.example:{server.port}/")
        assert server.seen == []


async def test_dns_rebinding_after_the_check_is_refused() -> None:
    """The name answers a public address when the URL is saved, loopback when it is used:
    the connection resolves for itself and refuses."""
    dns = ScriptedDns(["93.184.216.34"], ["127.0.0.1"])
    guard = OutboundGuard(resolver=dns)
    async with local_server() as server:
        url = f"http://rebind.example:{server.port}/"
        await guard.check(url)
        async with guarded(guard) as session:
            with pytest.raises(OutboundRefused, match="loopback"):
                await get(session, url)
        assert dns.lookups == ["rebind.example", "rebind.example"]
        assert server.seen == []


async def test_dns_rebinding_during_the_connection_is_refused() -> None:
    """Resolution happens once per connection and the socket goes to the address that was
    checked: a resolver that would answer a metadata address next time is never asked, and
    the Host header is still the name."""
    dns = ScriptedDns(["127.0.0.1"], ["169.254.169.254"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server() as server:
        url = f"http://rebind.example:{server.port}/pinned"
        async with guarded(guard) as session:
            assert await get(session, url) == (200, "hello from 127.0.0.1")
        assert dns.lookups == ["rebind.example"]
        assert [(s.path, s.host) for s in server.seen] == [
            ("/pinned", f"rebind.example:{server.port}")
        ]


async def test_every_new_connection_resolves_through_the_guard_again() -> None:
    """As the httpx guard: each new connection asks the guard (aiohttp's DNS cache is off),
    so a name that has turned internal is refused on the next connection."""
    dns = ScriptedDns(["127.0.0.1"], ["10.0.0.9"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server() as server, guarded(guard) as session:
        url = f"http://cached.example:{server.port}"
        close = {"connection": "close"}  # the next request needs a new connection
        async with session.request("GET", url + "/a", headers=close, timeout=TIMEOUT) as r:
            assert r.status == 200
        with pytest.raises(OutboundRefused, match="private"):
            await get(session, url + "/b")
        assert dns.lookups == ["cached.example", "cached.example"]
        assert [s.path for s in server.seen] == ["/a"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://metadata.example/",  # resolves to 169.254.169.254
        "http://0x7f.1/",
    ],
)
async def test_redirect_to_internal_is_not_followed_and_refused_if_it_were(
    location: str,
) -> None:
    dns = ScriptedDns(["169.254.169.254"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server() as server:
        server.redirect_to = location
        # The providers' session answers the redirect itself, never follows it.
        async with (
            guarded(guard) as session,
            session.request("GET", server.url + "/redirect", timeout=TIMEOUT) as r,
        ):
            assert r.status == 302
        # A hop that is followed anyway still meets the connector's checks.
        async with raw(guard) as bare:
            with pytest.raises(OutboundRefused):
                await bare.get(server.url + "/redirect", timeout=TIMEOUT, allow_redirects=True)
        assert [s.path for s in server.seen] == ["/redirect", "/redirect"]


async def test_proxy_from_the_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY would take the request to a proxy, which resolves the name itself after
    our check: the session goes direct to the checked address."""
    async with local_server() as proxy, local_server() as server:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=ScriptedDns(["127.0.0.1"]))
        async with guarded(guard) as session:
            assert await get(session, f"http://direct.example:{server.port}/x") == (
                200,
                "hello from 127.0.0.1",
            )
        assert [s.path for s in server.seen] == ["/x"]
        assert proxy.seen == []


async def test_a_proxy_named_per_request_is_refused() -> None:
    async with local_server() as proxy, local_server() as server:
        guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=ScriptedDns(["127.0.0.1"]))
        async with raw(guard) as bare:
            with pytest.raises(OutboundRefused, match="no proxy"):
                await bare.get(
                    f"http://direct.example:{server.port}/x", proxy=proxy.url, timeout=TIMEOUT
                )
        assert proxy.seen == []
        assert server.seen == []


@asynccontextmanager
async def cookie_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A local server whose every answer sets a cookie; it records the requests' headers."""
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        response = web.Response(text="ok")
        response.set_cookie("tenant", "a", path="/")
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_port())
    await site.start()
    try:
        yield site.name, seen
    finally:
        await runner.cleanup()


async def test_cookies_set_by_one_provider_call_are_not_sent_on_the_next() -> None:
    """One session serves every tenant's providers: nothing one answer sets rides along."""
    # A name, not an IP: aiohttp's default jar would keep this cookie and send it back.
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=ScriptedDns(["127.0.0.1"]))
    async with cookie_server() as (local, seen), guarded(guard) as session:
        url = local.replace("127.0.0.1", "provider.example")
        async with session.request("GET", url + "/first", timeout=TIMEOUT) as response:
            assert response.headers["set-cookie"].startswith("tenant=a")
        assert await get(session, url + "/next") == (200, "ok")
    assert len(seen) == 2
    assert "Cookie" not in seen[1]


async def test_pinned_tls_connection_checks_the_certificate_of_the_name(tmp_path: Path) -> None:
    """Dialling the checked IP keeps TLS on the URL's name: SNI and the certificate check
    use `pinned.example`, so a certificate for another name is refused."""
    certfile, keyfile, trust = self_signed(tmp_path, "pinned.example")
    dns = ScriptedDns(["127.0.0.1"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server(certfile, keyfile) as server:
        session = GuardedSession(guard, ssl=trust)
        try:
            assert await get(session, f"https://pinned.example:{server.port}/tls") == (
                200,
                "hello from 127.0.0.1",
            )
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get(session, f"https://other.example:{server.port}/tls")
        finally:
            await session.close()
    assert [s.host for s in server.seen] == [f"pinned.example:{server.port}"]


async def test_the_connector_refuses_a_resolver_or_dns_cache_of_its_own() -> None:
    for option in ({"resolver": aiohttp.ThreadedResolver()}, {"use_dns_cache": True}):
        with pytest.raises(ValueError, match="sets its own"):
            GuardedConnector(OutboundGuard(), **option)
