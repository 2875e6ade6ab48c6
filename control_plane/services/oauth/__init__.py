"""The OAuth 2.1 authorization server for MCP clients (M11).

Each organisation is its own issuer, `{control_plane_url}/oauth/{organization_id}`, so a
client, a registration and a code are always one tenant's. Authlib's server side does the
protocol (`server.py`); this package keeps what is ours: which clients exist and how they
are found (`clients.py`: dynamic registration, Client ID Metadata Documents), the consent
records and their revocation (`grants.py`), and the audience-bound tokens (`tokens.py`).
"""

from __future__ import annotations

import uuid

# What an MCP token may be used for at the sidecar: the same `collection:action` words as
# API-key scopes (authz_sidecar/authn.py scope_refusal), so one check serves both.
SCOPES: tuple[str, ...] = ("mcp:connect", "mcp:list", "agents:invoke", "pipelines:run")
# RFC 9068 access tokens: the sidecar tells an MCP token from a studio token by this header.
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105  (a JOSE header value, not a secret)


def issuer_url(control_plane_url: str, organization_id: uuid.UUID | str) -> str:
    return f"{control_plane_url.rstrip('/')}/oauth/{organization_id}"


def mcp_resource(gateway_url: str) -> str:
    """The canonical RFC 8707 resource of a gateway's MCP endpoint (what `aud` names)."""
    return gateway_url.rstrip("/") + "/mcp"
