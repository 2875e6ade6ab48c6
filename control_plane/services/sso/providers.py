"""Identity providers of an organisation (OIDC and SAML): create, read, update, delete, the
email domains each routes, the URLs the IdP is given, and where their secrets are stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import SsoDomain, SsoProvider
from control_plane.errors import Conflict, NotFound
from control_plane.schemas import sso as schemas
from control_plane.services import audit
from control_plane.services import domains as org_domains
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate
from control_plane.services.sso import saml
from control_plane.services.sso.enforcement import settings_row
from control_plane.services.sso.validation import check_url, invalid

if TYPE_CHECKING:
    from control_plane.services.secrets import SecretStore

OIDC_ISSUERS = {"google": "https://accounts.google.com"}


def client_secret_name(provider_id: uuid.UUID) -> str:
    return f"sso/{provider_id}/client_secret"


def sp_key_name(provider_id: uuid.UUID) -> str:
    return f"sso/{provider_id}/sp_key"


# -- URLs ----------------------------------------------------------------------------------


def urls(base_url: str, provider: SsoProvider) -> dict[str, str | None]:
    base = base_url.rstrip("/")
    if provider.type == "oidc":
        prefix = f"{base}/api/v1/auth/oidc/{provider.id}"
        return {
            "login_url": f"{prefix}/login",
            "redirect_uri": f"{prefix}/callback",
            "sp_entity_id": None,
            "sp_acs_url": None,
        }
    prefix = f"{base}/api/v1/auth/saml/{provider.id}"
    return {
        "login_url": f"{prefix}/login",
        "redirect_uri": None,
        "sp_entity_id": f"{prefix}/metadata",
        "sp_acs_url": f"{prefix}/acs",
    }


async def provider_domains(session: AsyncSession, provider_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(SsoDomain.domain)
        .where(SsoDomain.provider_id == provider_id)
        .order_by(SsoDomain.domain)
    )
    return list(rows)


async def out(session: AsyncSession, provider: SsoProvider, base_url: str) -> schemas.Provider:
    return schemas.Provider(
        id=provider.id,
        type=provider.type,
        name=provider.name,
        preset=provider.preset,
        enabled=provider.enabled,
        email_domains=await provider_domains(session, provider.id),
        issuer=provider.issuer,
        discovery_url=provider.discovery_url,
        client_id=provider.client_id,
        has_client_secret=provider.has_client_secret,
        saml_idp_entity_id=provider.saml_idp_entity_id,
        saml_idp_sso_url=provider.saml_idp_sso_url,
        groups_claim=provider.groups_claim,
        group_mapping=provider.group_mapping,
        default_role=provider.default_role,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
        **urls(base_url, provider),
    )


async def _set_domains(
    session: AsyncSession, provider: SsoProvider, domains: Sequence[str]
) -> None:
    wanted = sorted(set(domains))
    # A provider routes only domains its organisation proved by DNS: no first-come claims.
    if unproven := sorted(set(wanted) - await org_domains.verified(session)):
        raise invalid(
            "email_domains",
            f"not verified by this organisation: {', '.join(unproven)} "
            "(claim and verify them first: POST /api/v1/domains)",
        )
    clash = await session.scalar(
        select(SsoDomain.domain).where(
            SsoDomain.domain.in_(wanted), SsoDomain.provider_id != provider.id
        )
    )
    if clash:
        raise Conflict(
            f"email_domains: {clash} already routes to another provider of this organisation",
            details=[{"field": "email_domains", "message": f"{clash} is already routed"}],
        )
    await session.execute(delete(SsoDomain).where(SsoDomain.provider_id == provider.id))
    await session.flush()
    session.add_all(SsoDomain(domain=d, provider_id=provider.id) for d in wanted)


async def _unique_name(session: AsyncSession, name: str) -> None:
    if await session.scalar(select(SsoProvider.id).where(SsoProvider.name == name)):
        raise Conflict(f"a provider named {name!r} already exists", details=[{"field": "name"}])


def _apply_oidc(provider: SsoProvider, issuer: str | None, discovery_url: str | None) -> None:
    issuer = issuer or provider.issuer or OIDC_ISSUERS.get(provider.preset)
    if not issuer:
        raise invalid("issuer", f"required for an OIDC provider with preset {provider.preset!r}")
    check_url(issuer, "issuer")
    check_url(discovery_url, "discovery_url")
    provider.issuer = issuer.rstrip("/")
    provider.discovery_url = discovery_url or (
        provider.issuer + "/.well-known/openid-configuration"
    )


def _apply_saml_metadata(provider: SsoProvider, metadata_xml: str) -> None:
    idp = saml.parse_idp_metadata(metadata_xml)
    check_url(idp.sso_url, "saml_idp_metadata")
    provider.saml_idp_metadata = metadata_xml
    provider.saml_idp_entity_id = idp.entity_id
    provider.saml_idp_sso_url = idp.sso_url
    provider.saml_idp_certificate = idp.certificate


def _no_default_role(value: str | None) -> None:
    if value is not None:
        raise invalid(
            "default_role",
            "there is no default role: map IdP groups to roles (group_mapping) to provision",
        )


def _summary(provider: SsoProvider, domains: Sequence[str]) -> dict[str, Any]:
    return {
        "name": provider.name,
        "type": provider.type,
        "enabled": provider.enabled,
        "email_domains": sorted(domains),
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "has_client_secret": provider.has_client_secret,
        "saml_idp_entity_id": provider.saml_idp_entity_id,
        "group_mapping": provider.group_mapping,
        "default_role": provider.default_role,
    }


async def create_provider(
    session: AsyncSession,
    secret_store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    body: schemas.ProviderCreate,
    base_url: str,
) -> schemas.Provider:
    await _unique_name(session, body.name)
    provider = SsoProvider(
        id=uuid.uuid4(),
        type=body.type,
        name=body.name,
        preset=body.preset,
        enabled=body.enabled,
        groups_claim=body.groups_claim,
        group_mapping=[m.model_dump() for m in body.group_mapping],
        default_role=None,
        updated_at=utcnow(),
    )
    _no_default_role(body.default_role)
    if body.type == "oidc":
        if body.saml_idp_metadata is not None:
            raise invalid("saml_idp_metadata", "only for SAML providers")
        if not body.client_id:
            raise invalid("client_id", "required for an OIDC provider")
        _apply_oidc(provider, body.issuer, body.discovery_url)
        provider.client_id = body.client_id
        provider.has_client_secret = body.client_secret is not None
    else:
        for name in ("issuer", "discovery_url", "client_id", "client_secret"):
            if getattr(body, name) is not None:
                raise invalid(name, "only for OIDC providers")
        if body.saml_idp_metadata is None:
            raise invalid("saml_idp_metadata", "required for a SAML provider")
        _apply_saml_metadata(provider, body.saml_idp_metadata)
    session.add(provider)
    await session.flush()
    await _set_domains(session, provider, body.email_domains)
    if body.type == "oidc" and body.client_secret is not None:
        await secret_store.put(
            organization_id, client_secret_name(provider.id), body.client_secret, session=session
        )
    if body.type == "saml":
        # The SP signing key is ours, per provider; only its certificate is public.
        key_pem, cert_pem = saml.generate_sp_keypair(f"kaizen-sso-{provider.id}")
        await secret_store.put(organization_id, sp_key_name(provider.id), key_pem, session=session)
        provider.saml_sp_certificate = cert_pem
    await audit.record(
        session,
        organization_id,
        actor,
        "sso.provider.create",
        "sso_provider",
        provider.id,
        after=_summary(provider, body.email_domains),
    )
    return await out(session, provider, base_url)


async def get_provider(session: AsyncSession, provider_id: uuid.UUID) -> SsoProvider:
    provider = await session.get(SsoProvider, provider_id)
    if provider is None:
        raise NotFound("no such SSO provider")
    return provider


async def show_provider(
    session: AsyncSession, provider_id: uuid.UUID, base_url: str
) -> schemas.Provider:
    return await out(session, await get_provider(session, provider_id), base_url)


async def list_providers(
    session: AsyncSession, cursor: str | None, limit: int, base_url: str
) -> tuple[list[schemas.Provider], str | None]:
    rows, next_cursor = await paginate(session, select(SsoProvider), SsoProvider, cursor, limit)
    return [await out(session, p, base_url) for p in rows], next_cursor


async def update_provider(
    session: AsyncSession,
    secret_store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    provider_id: uuid.UUID,
    body: schemas.ProviderUpdate,
    base_url: str,
) -> schemas.Provider:
    provider = await get_provider(session, provider_id)
    domains_before = await provider_domains(session, provider.id)
    before = _summary(provider, domains_before)
    fields = body.model_fields_set
    oidc_only = ("issuer", "discovery_url", "client_id", "client_secret")
    saml_only = ("saml_idp_metadata",)
    for name in saml_only if provider.type == "oidc" else oidc_only:
        if name in fields and getattr(body, name) is not None:
            raise invalid(name, f"not a field of {provider.type.upper()} providers")
    if body.name is not None and body.name != provider.name:
        await _unique_name(session, body.name)
        provider.name = body.name
    if provider.type == "oidc":
        if body.issuer is not None or body.discovery_url is not None:
            _apply_oidc(provider, body.issuer, body.discovery_url)
        if body.client_id is not None:
            provider.client_id = body.client_id
        if body.client_secret is not None:
            await secret_store.put(
                organization_id,
                client_secret_name(provider.id),
                body.client_secret,
                session=session,
            )
            provider.has_client_secret = True
    elif body.saml_idp_metadata is not None:
        _apply_saml_metadata(provider, body.saml_idp_metadata)
    if body.groups_claim is not None:
        provider.groups_claim = body.groups_claim
    if body.group_mapping is not None:
        provider.group_mapping = [m.model_dump() for m in body.group_mapping]
    _no_default_role(body.default_role)
    provider.default_role = None
    if body.enabled is not None:
        provider.enabled = body.enabled
    if body.email_domains is not None:
        await _set_domains(session, provider, body.email_domains)
    provider.updated_at = utcnow()
    after = _summary(
        provider, body.email_domains if body.email_domains is not None else domains_before
    )
    if body.client_secret is not None:
        after["client_secret"] = "replaced"  # noqa: S105  (a marker, not a secret)
    await audit.record(
        session,
        organization_id,
        actor,
        "sso.provider.update",
        "sso_provider",
        provider.id,
        before=before,
        after=after,
    )
    return await out(session, provider, base_url)


async def delete_provider(
    session: AsyncSession,
    secret_store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    provider_id: uuid.UUID,
) -> None:
    provider = await get_provider(session, provider_id)
    before = _summary(provider, await provider_domains(session, provider.id))
    await session.execute(delete(SsoDomain).where(SsoDomain.provider_id == provider.id))
    await session.delete(provider)
    await session.flush()
    settings = await settings_row(session)
    if settings is not None and settings.sso_required:
        remaining = await session.scalar(select(SsoProvider.id).where(SsoProvider.enabled))
        if remaining is None:
            raise Conflict("SSO is required for this organisation: keep at least one provider")
    for name in (client_secret_name(provider.id), sp_key_name(provider.id)):
        await secret_store.delete(organization_id, name, session=session)
    await audit.record(
        session,
        organization_id,
        actor,
        "sso.provider.delete",
        "sso_provider",
        provider.id,
        before=before,
    )
