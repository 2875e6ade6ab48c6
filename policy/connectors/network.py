"""Where a connector dials, and its TLS: through the one outbound guard, pinned to what it checked.

The host is the tenant's word, so it passes `policy.net.outbound` like every URL the platform
fetches: the syntax gate, then every address it resolves to (loopback, private, metadata …
refused unless `KAIZEN_OUTBOUND_ALLOW_CIDRS` covers them). The driver is then given the
checked address, never the name (no DNS rebinding between check and connect); with
`tls: verify-full` the certificate is still verified against the host *name*, which the
drivers would otherwise take from the address they dial (`PinnedHostContext`).
"""

from __future__ import annotations

import ssl
from typing import Any

from policy.connectors.base import ConnectionSettings, ConnectorError
from policy.net.outbound import OutboundGuard, OutboundRefused, Unresolvable, parse_target


async def dial_address(guard: OutboundGuard, settings: ConnectionSettings) -> str:
    """The address to connect to for the settings' host, or ConnectorError(refused|unreachable)."""
    host = settings.host
    literal = f"[{host}]" if ":" in host and not host.startswith("[") else host
    try:
        target = parse_target(f"https://{literal}:{settings.port}/")
        addresses = await guard.addresses(target.host, settings.port)
    except Unresolvable as error:
        raise ConnectorError("unreachable", error.message) from None
    except OutboundRefused as error:
        raise ConnectorError("refused", error.message) from None
    return str(addresses[0])


class PinnedHostContext(ssl.SSLContext):
    """A client context that verifies the certificate against `hostname`, whatever address
    the driver dialled and passes as `server_hostname`."""

    hostname: str = ""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.hostname
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.hostname
        return super().wrap_socket(*args, **kwargs)


def tls_context(settings: ConnectionSettings) -> ssl.SSLContext | None:
    """None for `disable`; encryption without verification for `require`; else full checks."""
    if settings.tls == "disable":
        return None
    if settings.tls == "require":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    pinned = PinnedHostContext(ssl.PROTOCOL_TLS_CLIENT)
    pinned.load_default_certs()
    pinned.hostname = settings.host.strip("[]")
    return pinned
