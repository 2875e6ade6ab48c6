"""Bodies of the MCP-client consent and management routes (M11)."""

from __future__ import annotations

import uuid
from datetime import datetime

from control_plane.schemas.base import Input, Output


class ConsentRequest(Output):
    """What the consent page shows: who asks, for which gateway, with which scopes."""

    request_id: str
    client_id: str
    client_name: str
    redirect_uri: str
    gateway: str
    resource: str
    scopes: list[str]


class ConsentDecision(Input):
    approve: bool


class ConsentAnswer(Output):
    redirect_to: str


class OAuthGrantOut(Output):
    id: uuid.UUID
    client_id: str
    client_name: str
    gateway: str
    resource: str
    scopes: list[str]
    user: str
    created_at: datetime
    last_used_at: datetime | None


class OAuthClientOut(Output):
    id: uuid.UUID
    client_id: str
    client_name: str
    kind: str
    redirect_uris: list[str]
    blocked: bool
    created_at: datetime


class OAuthClientsOut(Output):
    clients: list[OAuthClientOut]
    grants: list[OAuthGrantOut]


class BlockClient(Input):
    blocked: bool


class OAuthSettingsBody(Input):
    dynamic_registration: bool
    metadata_documents: bool


class OAuthSettingsOut(Output):
    dynamic_registration: bool
    metadata_documents: bool
    issuer: str
