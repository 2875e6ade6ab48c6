"""Who an IdP says logged in, and the audit actor a login acts as."""

from __future__ import annotations

from dataclasses import dataclass, field

from control_plane.db.models import SsoProvider
from control_plane.services.audit import Actor


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the IdP says logged in."""

    subject: str
    email: str
    display_name: str | None = None
    groups: tuple[str, ...] = field(default=())


def login_actor(provider: SsoProvider, source_ip: str | None, request_id: str | None) -> Actor:
    return Actor("sso", str(provider.id), f"sso:{provider.name}", source_ip, request_id)
