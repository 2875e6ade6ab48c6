"""The outbound-URL guard: one check for every URL the platform fetches on a tenant's word
(webhooks, OIDC discovery and the endpoints it names, HTTP tools, MCP tool servers, LLM
provider base URLs).

- `parse_target(url)` is the syntax gate: `http`/`https` only, no userinfo (`user@host`
  tricks), no backslashes or whitespace, a host that is a canonical IP literal or a name
  that IDNA-encodes, a valid port. `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are refused
  outright: resolvers read them as 127.0.0.1 while humans and allowlists do not.
- `OutboundGuard.addresses(host, port)` resolves the name once and refuses when ANY address
  is loopback, link-local, private, shared (CGNAT 100.64/10), multicast, unspecified,
  reserved, otherwise not globally routable, or a cloud metadata address — looking through
  IPv4-mapped, 6to4, Teredo and NAT64 IPv6 forms — unless an operator CIDR
  (`KAIZEN_OUTBOUND_ALLOW_CIDRS`) covers it.
- The HTTP clients of `policy.net.outbound_http` call `addresses` inside the connection itself
  and dial the address they checked, so a name cannot resolve to something else between
  the check and the connection (DNS rebinding); every request, redirect hops included, goes
  through `parse_target` again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

MAX_URL = 2048
RESOLVE_SECONDS = 10.0
# Instance metadata services: AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Oracle.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundRefused(Exception):
    """A URL or address the platform will not contact; `message` says what and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unresolvable(OutboundRefused):
    """The host has no address (now): nothing to connect to, nothing judged yet."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the syntax gate: scheme, ASCII host (IPv6 without brackets), port."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def _canonical_ipv4(host: str) -> bool | None:
    """True for a dotted quad, False for another form resolvers read as IPv4, None else."""
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return socket.inet_ntoa(packed) == host


def parse_target(url: object) -> Target:
    """The syntax gate every outbound URL passes, before any resolution."""
    if not isinstance(url, str) or not url:
        raise OutboundRefused("the URL is empty")
    if len(url) > MAX_URL:
        raise OutboundRefused(f"the URL is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise OutboundRefused("the URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise OutboundRefused(f"the URL does not parse ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OutboundRefused(f"scheme {parts.scheme!r} is not allowed (http or https only)")
    if "@" in parts.netloc:
        raise OutboundRefused("credentials in the URL (user@host) are not allowed")
    raw = (
        parts.netloc.rsplit(":", 1)[0]
        if port is not None or parts.netloc.endswith(":")
        else (parts.netloc)
    )
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise OutboundRefused("the URL's IPv6 address is not closed by ']'")
        try:
            host = str(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError:
            raise OutboundRefused(f"{raw} is not an IPv6 address") from None
    else:
        host = _host_name(raw)
    if port is not None and not 0 < port < 65536:
        raise OutboundRefused(f"port {port} is out of range")
    return Target(url, scheme, host, port or DEFAULT_PORTS[scheme])


def _host_name(raw: str) -> str:
    if not raw:
        raise OutboundRefused("the URL has no host")
    canonical = _canonical_ipv4(raw)
    if canonical is True:
        return raw
    if canonical is False:
        raise OutboundRefused(
            f"host {raw!r} is an IPv4 address in a non-canonical form (write it as a dotted quad)"
        )
    if all(c in "0123456789." for c in raw):
        raise OutboundRefused(f"host {raw!r} is not a valid IPv4 address")
    try:
        return idna.encode(raw.rstrip("."), uts46=True).decode("ascii") + (
            "." if raw.endswith(".") else ""
        )
    except idna.IDNAError as error:
        raise OutboundRefused(f"host {raw!r} is not a valid host name ({error})") from None


def parse_cidrs(text: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """`KAIZEN_OUTBOUND_ALLOW_CIDRS`: comma-separated CIDRs (a bare address is a /32 or /128)."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as error:
            raise ValueError(
                f"KAIZEN_OUTBOUND_ALLOW_CIDRS: {item!r} is not a CIDR ({error})"
            ) from None
    return tuple(networks)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """`getaddrinfo` on the event loop's executor (never blocking the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class OutboundGuard:
    """Which addresses the platform may contact: public ones, plus the operator's CIDRs."""

    def __init__(self, allow: Iterable[IPNetwork] = (), resolver: Resolver | None = None) -> None:
        self.allow = tuple(allow)
        self._resolver = resolver or system_resolver

    @classmethod
    def from_setting(cls, text: str | None, resolver: Resolver | None = None) -> OutboundGuard:
        return cls(parse_cidrs(text), resolver)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be contacted, or None when it may."""
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                reason = self.refusal(inner)
                return f"{reason} (inside {ip})" if reason else None
        if ip in METADATA:
            return f"{ip} is a cloud metadata address"
        for flag, what in (
            ("is_loopback", "loopback"),
            ("is_link_local", "link-local"),
            ("is_multicast", "multicast"),
            ("is_unspecified", "unspecified"),
        ):
            if getattr(ip, flag):
                return f"{ip} is a {what} address"
        if isinstance(ip, ipaddress.IPv4Address) and ip in SHARED:
            return f"{ip} is a shared (CGNAT) address"
        if ip.is_private:
            return f"{ip} is a private address"
        if ip.is_reserved or not ip.is_global:
            return f"{ip} is a reserved address, not globally routable"
        return None

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` has (an IP literal is its own), each parsed."""
        literal = host[1:-1] if host.startswith("[") else host
        try:
            return [ipaddress.ip_address(literal)]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                raw = await self._resolver(host, port)
        except (OSError, TimeoutError) as error:
            raise Unresolvable(f"{host} does not resolve ({type(error).__name__})") from None
        addresses: list[IPAddress] = []
        for text in raw:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
            except ValueError:
                raise OutboundRefused(f"{host} resolved to {text!r}, not an address") from None
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise Unresolvable(f"{host} does not resolve")
        return addresses

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to dial for `host`; refuses when any of them is not allowed (a name
        with one public and one private address is an attack, not a fallback)."""
        found = await self.resolve(host, port)
        for address in found:
            reason = self.refusal(address)
            if reason is not None:
                shown = host if host == str(address) else f"{host} ({address})"
                raise OutboundRefused(f"refused to contact {shown}: {reason}")
        return found

    async def check(self, url: object, *, allow_unresolved: bool = False) -> Target:
        """Syntax and every resolved address, e.g. when a tenant saves a URL. The connection
        is checked again when it is made (resolution may have changed since), so a name that
        does not resolve yet may be accepted here (`allow_unresolved`) without opening a
        hole: whatever it resolves to later is judged then."""
        target = parse_target(url)
        try:
            await self.addresses(target.host, target.port)
        except Unresolvable:
            if not allow_unresolved:
                raise
        return target
