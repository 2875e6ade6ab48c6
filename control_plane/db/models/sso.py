"""Single sign-on: OIDC and SAML providers, email-domain routing, enforced SSO, verified
organisation domains and SSO account links."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime

# -- single sign-on (M7): OIDC and SAML providers, email-domain routing, enforced SSO ------


class SsoProvider(TenantScoped, Base):
    """An organisation's identity provider. Its OIDC client secret and SAML SP private key
    live in the secrets store (`sso/<id>/client_secret`, `sso/<id>/sp_key`), never here."""

    __tablename__ = "sso_providers"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    type: Mapped[str] = mapped_column(String(8))  # oidc | saml
    name: Mapped[str] = mapped_column(String(100))
    preset: Mapped[str] = mapped_column(String(16))  # azure_ad | okta | google | generic
    enabled: Mapped[bool] = mapped_column(default=True)
    issuer: Mapped[str | None] = mapped_column(String(2048))
    discovery_url: Mapped[str | None] = mapped_column(String(2048))
    client_id: Mapped[str | None] = mapped_column(String(512))
    has_client_secret: Mapped[bool] = mapped_column(default=False)
    saml_idp_metadata: Mapped[str | None] = mapped_column(Text)
    saml_idp_entity_id: Mapped[str | None] = mapped_column(String(2048))
    saml_idp_sso_url: Mapped[str | None] = mapped_column(String(2048))
    saml_idp_certificate: Mapped[str | None] = mapped_column(Text)
    saml_sp_certificate: Mapped[str | None] = mapped_column(Text)
    groups_claim: Mapped[str] = mapped_column(String(100), default="groups")
    # [{group, role, teams: [...]}], applied on every login.
    group_mapping: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    default_role: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SsoDomain(TenantScoped, Base):
    """An email domain routed to one provider; a domain belongs to one organisation only."""

    __tablename__ = "sso_domains"

    domain: Mapped[str] = mapped_column(String(253), unique=True)
    provider_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sso_providers.id", ondelete="CASCADE"), index=True
    )


class SsoSettings(TenantScoped, Base):
    """Whether members must log in through SSO, and the owners exempt from it (break-glass)."""

    __tablename__ = "sso_settings"
    __table_args__ = (UniqueConstraint("organization_id"),)

    sso_required: Mapped[bool] = mapped_column(default=False)
    break_glass_user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- M8 identity across tenants: verified email domains, SSO account links ---------------------


class OrganizationDomain(TenantScoped, Base):
    """An email domain an organisation claims. A claim grants nothing until the DNS TXT
    record `kaizen-studio-verification=<token>` proves control of the domain; a domain is
    verified by one organisation at most (the partial unique index), never first-come."""

    __tablename__ = "organization_domains"
    __table_args__ = (
        UniqueConstraint("organization_id", "domain"),
        Index(
            "uq_organization_domains_verified_domain",
            "domain",
            unique=True,
            postgresql_where=text("verified_at IS NOT NULL"),
            sqlite_where=text("verified_at IS NOT NULL"),
        ),
    )

    domain: Mapped[str] = mapped_column(String(253))
    token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SsoLink(TenantScoped, Base):
    """Which user an IdP subject signs in. Made only with proof: JIT creation, the account
    being a member of this provider's organisation alone, or the account's own password."""

    __tablename__ = "sso_links"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject"),
        UniqueConstraint("provider_id", "user_id"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sso_providers.id", ondelete="CASCADE")
    )
    subject: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # "password": the account's owner proved it; "organisation": made for a member of this
    # organisation alone (or created by JIT), void once the account joins another one.
    proof: Mapped[str] = mapped_column(String(16))
