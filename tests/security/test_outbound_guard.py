"""The outbound-URL guard (policy/net/outbound.py, policy/net/outbound_http.py) under attack: URL
tricks, numeric and IPv6 address forms, metadata addresses, redirects and DNS rebinding,
against a real local server on 127.0.0.1 (reachable only with the operator's allowance)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import httpx2
import pytest

from policy.net.outbound import OutboundGuard, OutboundRefused, parse_target
from policy.net.outbound_http import guarded_client, guarded_httpx2_client
from tests.security.outbound_support import local_server, self_signed

LOOPBACK_ALLOWED = "127.0.0.1/32"


class ScriptedDns:
    """A resolver answering from a script, one answer per lookup, counting lookups."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


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
    with pytest.raises(OutboundRefused):
        parse_target(url)
    async with guarded_client(OutboundGuard.from_setting(LOOPBACK_ALLOWED)) as client:
        with pytest.raises(OutboundRefused):
            await client.get(url)


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
    with pytest.raises(OutboundRefused, match="non-canonical"):
        parse_target(url)
    async with local_server() as server:
        port_url = url.rstrip("/") + f":{server.port}/"
        async with guarded_client(OutboundGuard.from_setting(LOOPBACK_ALLOWED)) as client:
            # httpx refuses some of these forms itself; the rest reach the guard.
            with pytest.raises((OutboundRefused, httpx.InvalidURL)):
                await client.get(port_url)
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
    guard = OutboundGuard()
    with pytest.raises(OutboundRefused, match=reason):
        await guard.check(url)
    async with guarded_client(guard) as client:
        with pytest.raises(OutboundRefused, match=reason):
            await client.get(url)
    async with guarded_httpx2_client(guard) as client2:
        with pytest.raises(OutboundRefused, match=reason):
            await client2.get(url)


async def test_ipv4_mapped_loopback_is_refused_unless_the_allowance_covers_it() -> None:
    """The allowance names 127.0.0.1; the mapped form is the same address and is allowed
    only through it, never because the IPv6 checks miss it."""
    refused = OutboundGuard.from_setting("10.0.0.0/8")
    with pytest.raises(OutboundRefused, match="loopback"):
        await refused.check("http://[::ffff:127.0.0.1]/")
    allowed = OutboundGuard.from_setting(LOOPBACK_ALLOWED)
    assert (await allowed.check("http://[::ffff:127.0.0.1]/")).host == "::ffff:7f00:1"


async def test_name_resolving_to_loopback_is_refused_by_default() -> None:
    async with local_server() as server:
        url = f"http://localhost:{server.port}/internal"
        with pytest.raises(OutboundRefused, match="loopback"):
            await OutboundGuard().check(url)
        for make in (guarded_client, guarded_httpx2_client):
            async with make(OutboundGuard()) as client:
                with pytest.raises(OutboundRefused, match="loopback"):
                    await client.get(url)
        assert server.seen == []


async def test_operator_allowance_lets_loopback_through() -> None:
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED)
    async with local_server() as server:
        url = f"http://localhost:{server.port}/internal"
        await guard.check(url)
        async with guarded_client(guard) as client:
            assert (await client.get(url)).text == "hello from 127.0.0.1"
        async with guarded_httpx2_client(guard) as client2:
            assert (await client2.get(url)).text == "hello from 127.0.0.1"
        assert [s.host for s in server.seen] == [f"localhost:{server.port}"] * 2


@pytest.mark.parametrize(
    "location", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/"]
)
async def test_redirect_to_private_address_is_refused(location: str) -> None:
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED)
    async with local_server() as server:
        server.redirect_to = location
        async with guarded_client(guard, max_redirects=5) as client:
            with pytest.raises(OutboundRefused):
                await client.get(server.url + "/redirect")
        async with guarded_httpx2_client(guard, max_redirects=5) as client2:
            with pytest.raises(OutboundRefused):
                await client2.get(server.url + "/redirect")
        assert [s.path for s in server.seen] == ["/redirect", "/redirect"]


async def test_redirect_with_userinfo_trick_is_refused() -> None:
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED)
    async with local_server() as server:
        server.redirect_to = f"http://public.example@127.0.0.1:{server.port}/again"
        async with guarded_client(guard, max_redirects=5) as client:
            with pytest.raises(OutboundRefused, match="user@host"):
                await client.get(server.url + "/redirect")
        assert [s.path for s in server.seen] == ["/redirect"]


async def test_dns_rebinding_after_the_check_is_refused() -> None:
    """The name answers a public address when the URL is saved, loopback when it is used:
    the connection resolves for itself and refuses."""
    dns = ScriptedDns(["93.184.216.34"], ["127.0.0.1"])
    guard = OutboundGuard(resolver=dns)
    async with local_server() as server:
        url = f"http://rebind.example:{server.port}/"
        await guard.check(url)
        async with guarded_client(guard) as client:
            with pytest.raises(OutboundRefused, match="loopback"):
                await client.get(url)
        assert server.seen == []


async def test_dns_rebinding_during_the_connection_is_refused() -> None:
    """Resolution happens once per connection and the socket goes to the address that was
    checked: a resolver that would answer a metadata address next time is never asked."""
    dns = ScriptedDns(["127.0.0.1"], ["169.254.169.254"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server() as server:
        url = f"http://rebind.example:{server.port}/pinned"
        async with guarded_client(guard) as client:
            response = await client.get(url)
        assert response.text == "hello from 127.0.0.1"
        assert dns.lookups == ["rebind.example"]
        assert [(s.path, s.host) for s in server.seen] == [
            ("/pinned", f"rebind.example:{server.port}")
        ]


async def test_name_with_a_public_and_a_private_address_is_refused() -> None:
    guard = OutboundGuard(resolver=ScriptedDns(["93.184.216.34", "10.0.0.7"]))
    with pytest.raises(OutboundRefused, match=r"10\.0\.0\.7 is a private address"):
        await guard.check("https://mixed.example/")


async def test_pinned_tls_connection_checks_the_certificate_of_the_name(tmp_path: Path) -> None:
    """Dialling the pinned IP keeps TLS on the URL's name: SNI and the certificate check use
    `pinned.example`, so a certificate for another name is refused."""
    certfile, keyfile, trust = self_signed(tmp_path, "pinned.example")
    dns = ScriptedDns(["127.0.0.1"])
    guard = OutboundGuard.from_setting(LOOPBACK_ALLOWED, resolver=dns)
    async with local_server(certfile, keyfile) as server:
        async with guarded_client(guard, verify=trust) as client:
            response = await client.get(f"https://pinned.example:{server.port}/tls")
            assert response.text == "hello from 127.0.0.1"
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://other.example:{server.port}/tls")
        async with guarded_httpx2_client(guard, verify=trust) as client2:
            assert (await client2.get(f"https://pinned.example:{server.port}/")).is_success
            with pytest.raises(httpx2.ConnectError):
                await client2.get(f"https://other.example:{server.port}/")
    assert [s.host for s in server.seen][:1] == [f"pinned.example:{server.port}"]


def test_malformed_allowance_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="KAIZEN_OUTBOUND_ALLOW_CIDRS"):
        OutboundGuard.from_setting("127.0.0.1/8")  # host bits set: a typo, not a range
