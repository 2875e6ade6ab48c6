"""Single sign-on: identity providers per organisation, group mapping, enforced SSO."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from control_plane.schemas.base import Input, Name, Output

ProviderType = Literal["oidc", "saml"]
Preset = Literal["azure_ad", "okta", "google", "generic"]
# Owners are made in Kaizen, never by an IdP's group claim.
MappedRole = Literal["admin", "security_admin", "developer", "operator", "auditor", "viewer"]
Domain = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=253,
        to_lower=True,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    ),
]
Url = Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=r"^https?://\S+$")]
GroupName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ClaimName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^\S+$")]
ClientSecret = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Metadata = Annotated[str, StringConstraints(min_length=1, max_length=200_000)]


class GroupMapping(Input):
    group: GroupName
    role: MappedRole | None = Field(default=None, description="Organisation role it grants.")
    teams: list[Name] = Field(default_factory=list, max_length=50)


class ProviderCreate(Input):
    type: ProviderType
    name: Name
    preset: Preset = "generic"
    email_domains: list[Domain] = Field(default_factory=list, max_length=50)
    issuer: Url | None = Field(default=None, description="OIDC issuer (presets fill it in).")
    discovery_url: Url | None = Field(
        default=None, description="OIDC discovery document; default: issuer + well-known path."
    )
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    client_secret: ClientSecret | None = Field(
        default=None, description="Write-only; kept in the secrets store."
    )
    saml_idp_metadata: Metadata | None = Field(
        default=None, description="The SAML IdP's metadata XML."
    )
    groups_claim: ClaimName = Field(
        default="groups", description="ID-token/userinfo claim or SAML attribute with groups."
    )
    group_mapping: list[GroupMapping] = Field(default_factory=list, max_length=200)
    default_role: MappedRole | None = Field(
        default=None,
        description="Always null: there is no default role. Users are provisioned only with a "
        "role their IdP groups map to; a non-null value is refused.",
    )
    enabled: bool = True


class ProviderUpdate(Input):
    name: Name | None = None
    email_domains: list[Domain] | None = Field(default=None, max_length=50)
    issuer: Url | None = None
    discovery_url: Url | None = None
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    client_secret: ClientSecret | None = None
    saml_idp_metadata: Metadata | None = None
    groups_claim: ClaimName | None = None
    group_mapping: list[GroupMapping] | None = Field(default=None, max_length=200)
    default_role: MappedRole | None = Field(
        default=None, description="Always null: there is no default role (non-null is refused)."
    )
    enabled: bool | None = None


class Provider(Output):
    id: uuid.UUID
    type: ProviderType
    name: str
    preset: Preset
    enabled: bool
    email_domains: list[str]
    issuer: str | None
    discovery_url: str | None
    client_id: str | None
    has_client_secret: bool
    saml_idp_entity_id: str | None
    saml_idp_sso_url: str | None
    groups_claim: str
    group_mapping: list[dict[str, object]]
    default_role: str | None
    login_url: str
    redirect_uri: str | None = Field(description="OIDC: register this at the IdP.")
    sp_entity_id: str | None = Field(description="SAML: our entity id (= metadata URL).")
    sp_acs_url: str | None
    created_at: datetime
    updated_at: datetime


class SsoSettingsUpdate(Input):
    sso_required: bool
    break_glass_user_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=10,
        description="Owners who may still log in with a password when SSO is required.",
    )


class SsoSettingsOut(Output):
    sso_required: bool
    break_glass_user_ids: list[uuid.UUID]


class Discovery(Output):
    provider_id: uuid.UUID
    type: ProviderType
    name: str
    login_url: str


class ExchangeRequest(Input):
    code: Annotated[str, StringConstraints(min_length=16, max_length=128)]
    totp: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None,
        description="A TOTP or recovery code, when the member has MFA or their role requires "
        "it; a 401 `mfa_required`/`mfa_invalid` answer carries a fresh `retry_code` to send "
        "with it (the first code is single-use).",
    )


class LinkRequest(Input):
    link_code: Annotated[str, StringConstraints(min_length=16, max_length=128)] = Field(
        description="From the 403 `sso_link_required` answer of the SSO login."
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    totp: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="A TOTP or recovery code, when the account has MFA."
    )
