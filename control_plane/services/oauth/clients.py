"""Which clients the authorization server knows, and how a client is found.

Two ways in: dynamic registration (RFC 7591, only when the organisation turned it on) and
Client ID Metadata Documents (the client id is an https URL whose JSON document names the
client and its redirect URIs; fetched through the outbound guard, so a client id cannot
make the control plane reach an internal address). Either way redirect URIs are https or
http to a loopback address (RFC 8252), nothing else; every client is public (PKCE, no
secret) and an administrator can block one.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import OAuthClient, OAuthSettings
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.oauth import SCOPES
from policy.net.outbound import OutboundGuard, OutboundRefused
from policy.net.outbound_http import guarded_client

METADATA_DOCUMENT_MAX_BYTES = 5 * 1024
METADATA_DOCUMENT_TIMEOUT = 5.0
_LOOPBACK_NAMES = {"localhost"}


class ClientError(Exception):
    """A client that cannot be used; the message is safe to show (RFC 6749 error text)."""


def redirect_uri_refusal(uri: object) -> str | None:
    """Why `uri` may not be a redirect URI, or None: https, or http to a loopback host."""
    if not isinstance(uri, str) or not uri or len(uri) > 2048:
        return "redirect URI must be a string of at most 2048 characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        return f"redirect URI {uri[:100]!r} is not a URL"
    if parts.fragment or "#" in uri:
        return "redirect URI must not carry a fragment"
    if not parts.hostname:
        return f"redirect URI {uri[:100]!r} has no host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return None
    return f"redirect URI {uri[:100]!r} must be https or http to a loopback address"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Client(ClientMixin):  # type: ignore[misc]  # Authlib is untyped
    """A client as Authlib sees it: public, code + refresh token, PKCE."""

    id: uuid.UUID
    client_id: str
    client_name: str
    redirect_uris: list[str]
    kind: str
    blocked: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: OAuthClient) -> Client:
        return cls(
            row.id,
            row.client_id,
            row.client_name,
            list(row.redirect_uris),
            row.kind,
            row.blocked_at is not None,
            dict(row.client_metadata or {}),
        )

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(SCOPES)
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris:
            return True
        # RFC 8252 §7.3: a native client's loopback redirect may use any port.
        asked = urlsplit(redirect_uri)
        if asked.scheme != "http" or not asked.hostname or not _is_loopback(asked.hostname):
            return False
        for registered in map(urlsplit, self.redirect_uris):
            if (registered.scheme, registered.hostname, registered.path, registered.query) == (
                asked.scheme,
                asked.hostname,
                asked.path,
                asked.query,
            ):
                return True
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # public clients have none

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


async def settings_of(session: AsyncSession) -> OAuthSettings:
    """The organisation's switches (the session is bound to it); defaults when unset."""
    row = await session.scalar(select(OAuthSettings))
    return row or OAuthSettings(dynamic_registration=False, metadata_documents=True)


async def update_settings(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    dynamic_registration: bool,
    metadata_documents: bool,
) -> OAuthSettings:
    """Turn dynamic registration and Client ID Metadata Documents on or off (audited)."""
    row = await session.scalar(select(OAuthSettings))
    if row is None:
        row = OAuthSettings(organization_id=organization_id)
        session.add(row)
    row.dynamic_registration = dynamic_registration
    row.metadata_documents = metadata_documents
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "oauth_settings.updated",
        "organization",
        organization_id,
        dynamic_registration=dynamic_registration,
        metadata_documents=metadata_documents,
    )
    return row


async def find(session: AsyncSession, client_id: str) -> OAuthClient | None:
    return await session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))


def is_metadata_document_url(client_id: str) -> bool:
    parts = urlsplit(client_id)
    return parts.scheme == "https" and bool(parts.hostname) and parts.path not in ("", "/")


async def resolve(
    session: AsyncSession,
    organization_id: uuid.UUID,
    client_id: str,
    guard: OutboundGuard,
    *,
    fetch: bool = True,
) -> Client | None:
    """The client `client_id` names, fetching its metadata document when it is an https URL
    not seen before (and the organisation accepts them); None when there is no such client."""
    if not client_id or len(client_id) > 2048:
        return None
    row = await find(session, client_id)
    if row is None and fetch and is_metadata_document_url(client_id):
        if not (await settings_of(session)).metadata_documents:
            raise ClientError("this organisation does not accept Client ID Metadata Documents")
        document = await fetch_metadata_document(client_id, guard)
        row = OAuthClient(
            organization_id=organization_id,
            client_id=client_id,
            kind="metadata_document",
            client_name=document["client_name"],
            redirect_uris=document["redirect_uris"],
            client_metadata=document,
        )
        session.add(row)
        await session.flush()
    return Client.of(row) if row is not None else None


async def fetch_metadata_document(
    client_id: str, guard: OutboundGuard, *, http: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """The validated Client ID Metadata Document at `client_id` (no redirects, 5 KiB)."""
    own = http is None
    client = http or guarded_client(guard, timeout=METADATA_DOCUMENT_TIMEOUT)
    try:
        async with client.stream("GET", client_id, headers={"accept": "application/json"}) as r:
            if r.status_code != 200:
                raise ClientError(f"client metadata document answered HTTP {r.status_code}")
            body = b""
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > METADATA_DOCUMENT_MAX_BYTES:
                    raise ClientError("client metadata document is larger than 5 KiB")
    except OutboundRefused as exc:
        raise ClientError(f"client metadata document may not be fetched: {exc}") from None
    except httpx.HTTPError as exc:
        raise ClientError(f"client metadata document could not be fetched: {exc}") from None
    finally:
        if own:
            await client.aclose()
    try:
        document = json.loads(body)
    except ValueError:
        raise ClientError("client metadata document is not JSON") from None
    return validate_metadata_document(document, client_id)


def validate_metadata_document(document: object, client_id: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ClientError("client metadata document is not a JSON object")
    if document.get("client_id") != client_id:
        raise ClientError("client metadata document's client_id is not its own URL")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise ClientError("client metadata document must use token_endpoint_auth_method none")
    return _checked_metadata(document)


def _checked_metadata(document: dict[str, Any]) -> dict[str, Any]:
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > 10:
        raise ClientError("redirect_uris must list one to ten URIs")
    for uri in uris:
        if refusal := redirect_uri_refusal(uri):
            raise ClientError(refusal)
    name = document.get("client_name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ClientError("client_name must be a string of at most 200 characters")
    out = {
        key: document[key]
        for key in ("client_id", "client_name", "client_uri", "logo_uri", "scope")
        if isinstance(document.get(key), str)
    }
    out["redirect_uris"] = list(uris)
    out["client_name"] = name or urlsplit(uris[0]).hostname or "unnamed client"
    return out


def registration_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Dynamic-registration metadata we keep, after Authlib's RFC 7591 claim checks: every
    client is public and uses the code flow (what else a client asked for is replaced, as
    RFC 7591 §3.2.1 allows; the response says what it got)."""
    return _checked_metadata(metadata)
