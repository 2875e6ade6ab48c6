"""Single sign-on, protocol-independent: identity providers per organisation, email-domain
routing, just-in-time provisioning with group mapping, enforced SSO, and the single-use
code that hands a finished SSO login to the UI without putting tokens in a URL.

The OIDC and SAML specifics live in `sso_oidc.py` and `sso_saml.py`; both end in an
`ExternalIdentity` that `provision` turns into a member of the organisation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import (
    Membership,
    OrganizationDomain,
    SsoDomain,
    SsoProvider,
    SsoSettings,
)
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from control_plane.schemas import sso as schemas
from control_plane.services import audit, sso_saml
from control_plane.services import domains as org_domains
from control_plane.services.audit import Actor
from control_plane.services.identity import normalize_email
from control_plane.services.kv import KeyValueStore
from control_plane.services.pagination import paginate

if TYPE_CHECKING:
    from control_plane.services.secrets import SecretStore

CODE_TTL = 60  # seconds the UI has to trade an SSO code for tokens
STATE_TTL = 600  # seconds a user has to finish at the IdP
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
OIDC_ISSUERS = {"google": "https://accounts.google.com"}


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the IdP says logged in."""

    subject: str
    email: str
    display_name: str | None = None
    groups: tuple[str, ...] = field(default=())


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


def _check_url(value: str | None, field_name: str) -> None:
    """IdP endpoints are HTTPS; plain HTTP only on this machine (local IdPs, tests)."""
    if value is None:
        return
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0] if not rest.startswith("[") else "[::1]"
    if scheme != "https" and host not in LOOPBACK_HOSTS:
        raise Invalid(
            f"{field_name}: must be an https:// URL",
            details=[{"field": field_name, "message": "must be an https:// URL"}],
        )


def _invalid(field_name: str, message: str) -> Invalid:
    return Invalid(f"{field_name}: {message}", details=[{"field": field_name, "message": message}])


# -- provider store ------------------------------------------------------------------------


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
        raise _invalid(
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
        raise _invalid("issuer", f"required for an OIDC provider with preset {provider.preset!r}")
    _check_url(issuer, "issuer")
    _check_url(discovery_url, "discovery_url")
    provider.issuer = issuer.rstrip("/")
    provider.discovery_url = discovery_url or (
        provider.issuer + "/.well-known/openid-configuration"
    )


def _apply_saml_metadata(provider: SsoProvider, metadata_xml: str) -> None:
    idp = sso_saml.parse_idp_metadata(metadata_xml)
    _check_url(idp.sso_url, "saml_idp_metadata")
    provider.saml_idp_metadata = metadata_xml
    provider.saml_idp_entity_id = idp.entity_id
    provider.saml_idp_sso_url = idp.sso_url
    provider.saml_idp_certificate = idp.certificate


def _no_default_role(value: str | None) -> None:
    if value is not None:
        raise _invalid(
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
) -> SsoProvider:
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
            raise _invalid("saml_idp_metadata", "only for SAML providers")
        if not body.client_id:
            raise _invalid("client_id", "required for an OIDC provider")
        _apply_oidc(provider, body.issuer, body.discovery_url)
        provider.client_id = body.client_id
        provider.has_client_secret = body.client_secret is not None
    else:
        for name in ("issuer", "discovery_url", "client_id", "client_secret"):
            if getattr(body, name) is not None:
                raise _invalid(name, "only for OIDC providers")
        if body.saml_idp_metadata is None:
            raise _invalid("saml_idp_metadata", "required for a SAML provider")
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
        key_pem, cert_pem = sso_saml.generate_sp_keypair(f"kaizen-sso-{provider.id}")
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
    return provider


async def get_provider(session: AsyncSession, provider_id: uuid.UUID) -> SsoProvider:
    provider = await session.get(SsoProvider, provider_id)
    if provider is None:
        raise NotFound("no such SSO provider")
    return provider


async def list_providers(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[Sequence[SsoProvider], str | None]:
    return await paginate(session, select(SsoProvider), SsoProvider, cursor, limit)


async def update_provider(
    session: AsyncSession,
    secret_store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    provider_id: uuid.UUID,
    body: schemas.ProviderUpdate,
) -> SsoProvider:
    provider = await get_provider(session, provider_id)
    domains_before = await provider_domains(session, provider.id)
    before = _summary(provider, domains_before)
    fields = body.model_fields_set
    oidc_only = ("issuer", "discovery_url", "client_id", "client_secret")
    saml_only = ("saml_idp_metadata",)
    for name in saml_only if provider.type == "oidc" else oidc_only:
        if name in fields and getattr(body, name) is not None:
            raise _invalid(name, f"not a field of {provider.type.upper()} providers")
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
    return provider


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
    settings = await _settings_row(session)
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


async def provider_for_login(db: Database, provider_id: uuid.UUID, kind: str) -> SsoProvider:
    """The enabled provider a public login route names (its id is the tenant's locator)."""
    async with db.session(SYSTEM) as session:
        provider = await session.get(SsoProvider, provider_id)
    if provider is None or provider.type != kind or not provider.enabled:
        raise NotFound(f"no such {kind.upper()} provider")
    return provider


async def provider_by_id(db: Database, provider_id: uuid.UUID) -> SsoProvider:
    async with db.session(SYSTEM) as session:
        provider = await session.get(SsoProvider, provider_id)
    if provider is None or not provider.enabled:
        raise NotFound("no such SSO provider")
    return provider


async def discover(db: Database, email: str) -> SsoProvider:
    """Email-domain routing: the enabled provider of the organisation that owns the domain."""
    domain = normalize_email(email).rpartition("@")[2]
    async with db.session(SYSTEM) as session:
        provider = await session.scalar(
            select(SsoProvider)
            .join(SsoDomain, SsoDomain.provider_id == SsoProvider.id)
            .join(
                OrganizationDomain,
                (OrganizationDomain.domain == SsoDomain.domain)
                & (OrganizationDomain.organization_id == SsoProvider.organization_id),
            )
            .where(
                SsoDomain.domain == domain,
                SsoProvider.enabled.is_(True),
                OrganizationDomain.verified_at.is_not(None),
            )
        )
    if provider is None:
        raise NotFound("no single sign-on is configured for this email domain")
    return provider


# -- enforced SSO --------------------------------------------------------------------------


async def _settings_row(session: AsyncSession) -> SsoSettings | None:
    return await session.scalar(select(SsoSettings))


async def get_settings(session: AsyncSession) -> schemas.SsoSettingsOut:
    row = await _settings_row(session)
    if row is None:
        return schemas.SsoSettingsOut(sso_required=False, break_glass_user_ids=[])
    return schemas.SsoSettingsOut(
        sso_required=row.sso_required,
        break_glass_user_ids=[uuid.UUID(u) for u in row.break_glass_user_ids],
    )


async def put_settings(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    body: schemas.SsoSettingsUpdate,
) -> schemas.SsoSettingsOut:
    if body.sso_required and not await session.scalar(
        select(SsoProvider.id).where(SsoProvider.enabled.is_(True))
    ):
        raise _invalid("sso_required", "configure and enable an SSO provider first")
    ids = sorted({str(u) for u in body.break_glass_user_ids})
    if ids:
        owners = set(
            str(u)
            for u in await session.scalars(
                select(Membership.user_id).where(
                    Membership.user_id.in_([uuid.UUID(i) for i in ids]), Membership.role == "owner"
                )
            )
        )
        if missing := [i for i in ids if i not in owners]:
            raise _invalid(
                "break_glass_user_ids", f"not owners of this organisation: {', '.join(missing)}"
            )
    before = await get_settings(session)
    row = await _settings_row(session)
    if row is None:
        row = SsoSettings(sso_required=False, break_glass_user_ids=[], updated_at=utcnow())
        session.add(row)
    row.sso_required = body.sso_required
    row.break_glass_user_ids = ids
    row.updated_at = utcnow()
    await session.flush()
    after = await get_settings(session)
    await audit.record(
        session,
        organization_id,
        actor,
        "sso.settings.update",
        "organization",
        organization_id,
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after


async def check_password_login(
    db: Database, user_id: uuid.UUID, organization_id: uuid.UUID
) -> None:
    """Refuse a password login to an organisation that requires SSO (break-glass owners pass)."""
    async with db.session(organization_id) as session:
        row = await _settings_row(session)
    if row is None or not row.sso_required or str(user_id) in row.break_glass_user_ids:
        return
    raise Forbidden(
        "this organisation requires single sign-on (SSO): log in through your identity "
        "provider (GET /api/v1/auth/sso/discover?email=…)",
        details=[{"field": "password", "message": "password login is disabled by SSO"}],
    )


# -- single-use values in the key-value store ----------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def remember(
    kv: KeyValueStore, kind: str, key: str, record: dict[str, Any], ttl: int
) -> None:
    await kv.set(f"sso:{kind}:{_digest(key)}", json.dumps(record), ttl=ttl)


async def peek(kv: KeyValueStore, kind: str, key: str) -> dict[str, Any] | None:
    """The record stored under `key`, left in place."""
    raw = await kv.get(f"sso:{kind}:{_digest(key)}")
    return json.loads(raw) if raw else None


async def take(kv: KeyValueStore, kind: str, key: str) -> dict[str, Any] | None:
    """The record stored under `key`, removed atomically: a second take finds nothing."""
    raw = await kv.pop(f"sso:{kind}:{_digest(key)}")
    return json.loads(raw) if raw else None


async def first_sighting(kv: KeyValueStore, kind: str, key: str, ttl: int) -> bool:
    """True only the first time `key` is seen within `ttl` seconds (atomic on Redis)."""
    return await kv.incr(f"sso:{kind}:{_digest(key)}", ttl=max(1, ttl)) == 1


async def issue_code(
    kv: KeyValueStore, user_id: uuid.UUID, organization_id: uuid.UUID, provider_id: uuid.UUID
) -> str:
    code = secrets.token_urlsafe(32)
    record = {"user": str(user_id), "org": str(organization_id), "provider": str(provider_id)}
    await remember(kv, "code", code, record, CODE_TTL)
    return code


async def redeem_code(kv: KeyValueStore, code: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """(user, organisation, provider) of a single-use code; the code is gone afterwards."""
    record = await take(kv, "code", code)
    if record is None:
        raise Unauthenticated("the SSO code is invalid, expired or already used")
    return uuid.UUID(record["user"]), uuid.UUID(record["org"]), uuid.UUID(record["provider"])


def login_actor(provider: SsoProvider, source_ip: str | None, request_id: str | None) -> Actor:
    return Actor("sso", str(provider.id), f"sso:{provider.name}", source_ip, request_id)
