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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import (
    Membership,
    OrganizationDomain,
    SsoDomain,
    SsoLink,
    SsoProvider,
    SsoSettings,
    Team,
    TeamMember,
    User,
)
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from control_plane.schemas import sso as schemas
from control_plane.services import audit, passwords, roles, sso_saml
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


async def _domains(session: AsyncSession, provider_id: uuid.UUID) -> list[str]:
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
        email_domains=await _domains(session, provider.id),
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
    domains_before = await _domains(session, provider.id)
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
    before = _summary(provider, await _domains(session, provider.id))
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


async def check_account_password(db: Database, user_id: uuid.UUID, password: str) -> None:
    """The proof the link flow asks for: the account's own password."""
    async with db.session(SYSTEM) as session:
        user = await session.get(User, user_id)
    valid = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or not user.is_active:
        raise Unauthenticated(
            "wrong password for the account being linked",
            details=[{"field": "password", "message": "wrong password"}],
        )


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


# -- just-in-time provisioning -------------------------------------------------------------

_PRIVILEGE = {role: rank for rank, role in enumerate(reversed(roles.ROLES))}


class SsoLinkRequired(Forbidden):
    """The address has a Kaizen account this provider has no proven link to."""

    code = "sso_link_required"

    def __init__(self, message: str, *, user_id: uuid.UUID, can_link: bool):
        super().__init__(message)
        self.user_id = user_id
        self.can_link = can_link


def maps_roles(provider: SsoProvider) -> bool:
    """Whether the provider's configuration names any role (JIT provisioning is on)."""
    return any(m.get("role") for m in provider.group_mapping)


def mapped_access(
    provider: SsoProvider, groups: Sequence[str]
) -> tuple[str | None, set[str], set[str]]:
    """(role, teams to be in, teams the mapping manages) for these IdP groups; no default."""
    have = set(groups)
    matched = [m for m in provider.group_mapping if m["group"] in have]
    granted = [m["role"] for m in matched if m.get("role")]
    role = max(granted, key=_PRIVILEGE.__getitem__) if granted else None
    wanted = {t for m in matched for t in m.get("teams", [])}
    managed = {t for m in provider.group_mapping for t in m.get("teams", [])}
    return role, wanted, managed


async def check_email_domain(session: AsyncSession, provider: SsoProvider, email: str) -> None:
    """Only addresses of domains this organisation verified by DNS (none ⇒ nobody)."""
    domain = email.rpartition("@")[2]
    allowed = await org_domains.verified(session)
    routed = await _domains(session, provider.id)
    if domain not in allowed or (routed and domain not in routed):
        raise Forbidden(
            f"{provider.name} may not sign in addresses of {domain}: the domain is not "
            "verified by this organisation (POST /api/v1/domains)"
            if domain not in allowed
            else f"{provider.name} may not sign in addresses of {domain}",
            details=[{"field": "email", "message": f"{domain} is not this provider's"}],
        )


async def memberships_elsewhere(
    db: Database, provider: SsoProvider, identity: ExternalIdentity
) -> dict[uuid.UUID, int]:
    """For the accounts this login could resolve to (linked subject, same email): how many
    other organisations each belongs to. A SYSTEM read across tenants, made before the
    provisioning transaction opens (SQLite has one writer)."""
    email = normalize_email(identity.email)
    async with db.session(SYSTEM) as session:
        linked = select(SsoLink.user_id).where(
            SsoLink.provider_id == provider.id, SsoLink.subject == identity.subject
        )
        by_email = select(User.id).where(User.email == email)
        rows = await session.execute(
            select(Membership.user_id, func.count(Membership.id))
            .where(
                Membership.user_id.in_(linked.union(by_email).scalar_subquery()),
                Membership.organization_id != provider.organization_id,
            )
            .group_by(Membership.user_id)
        )
        return {user_id: int(count) for user_id, count in rows}


def _without_proof(provider: SsoProvider, user: User, elsewhere: int) -> SsoLinkRequired:
    can_link = user.password_hash is not None
    how = (
        "; to link it, prove it is yours: POST /api/v1/auth/sso/link with the link_code "
        "and the account's password"
        if can_link
        else ""
    )
    if elsewhere:
        reason = "is a member of another organisation"
        verb = "may not sign it in, link it or change it"
    else:
        reason = "is not linked to this provider"
        verb = "may not attach it without proof"
    return SsoLinkRequired(
        f"{user.email} already has a Kaizen account that {reason}; {provider.name} {verb}{how}",
        user_id=user.id,
        can_link=can_link,
    )


async def _account_for_link(
    session: AsyncSession,
    provider: SsoProvider,
    link: SsoLink,
    elsewhere: Mapping[uuid.UUID, int],
    proven: bool,
) -> User | None:
    """The linked account. A link made without the account's password holds only while the
    account belongs to no other organisation."""
    user = await session.get(User, link.user_id)
    if user is None or link.proof == "password" or proven:
        return user
    if count := elsewhere.get(user.id, 0):
        raise _without_proof(provider, user, count)
    return user


async def _check_existing_account(
    session: AsyncSession,
    elsewhere: Mapping[uuid.UUID, int],
    provider: SsoProvider,
    user: User,
    subject: str,
    proven: bool,
) -> None:
    """Refuse to attach an account this provider has no proof for — proof is the account's
    password (`proven`) or this being the account's own organisation's IdP."""
    other_subject = await session.scalar(
        select(SsoLink.subject).where(
            SsoLink.provider_id == provider.id, SsoLink.user_id == user.id
        )
    )
    if other_subject is not None and other_subject != subject:
        raise Forbidden(
            f"{user.email} is linked to another identity at {provider.name}; refused",
            details=[{"field": "sub", "message": "a different subject is linked"}],
        )
    if proven:
        return
    mine = await session.scalar(select(Membership.id).where(Membership.user_id == user.id))
    count = elsewhere.get(user.id, 0)
    if mine is None or count:
        raise _without_proof(provider, user, count)
    # A member of this organisation alone: its IdP is the account's own.


async def provision(
    session: AsyncSession,
    provider: SsoProvider,
    identity: ExternalIdentity,
    actor: Actor,
    elsewhere: Mapping[uuid.UUID, int],
    *,
    proven_user: uuid.UUID | None = None,
) -> uuid.UUID:
    """Sign in (and create or update) the member the IdP vouched for; returns the user id.

    `elsewhere` is `memberships_elsewhere` for this login. Every refusal is raised before
    the first write. `proven_user` is an account whose password the caller has just checked
    (the link flow). Audited."""
    org_id = provider.organization_id
    email = normalize_email(identity.email)
    await check_email_domain(session, provider, email)
    link = await session.scalar(
        select(SsoLink).where(
            SsoLink.provider_id == provider.id, SsoLink.subject == identity.subject
        )
    )
    if link is not None:
        user = await _account_for_link(
            session, provider, link, elsewhere, link.user_id == proven_user
        )
    else:
        user = await session.scalar(select(User).where(User.email == email))
        if user is not None:
            await _check_existing_account(
                session, elsewhere, provider, user, identity.subject, user.id == proven_user
            )
    if user is not None and not user.is_active:
        raise Unauthenticated("this account is disabled")
    role, wanted_teams, managed_teams = mapped_access(provider, identity.groups)
    membership = None
    if user is not None:
        membership = await session.scalar(select(Membership).where(Membership.user_id == user.id))
    if role is None and (membership is None or maps_roles(provider)):
        if not maps_roles(provider):
            raise Forbidden(
                f"just-in-time provisioning is off for {provider.name}: its group mapping "
                "names no role, so it signs in existing members only"
            )
        raise Forbidden("none of your identity provider groups grants a role in this organisation")
    if user is None:
        user = User(id=uuid.uuid4(), email=email, display_name=identity.display_name)
        session.add(user)
        await session.flush()
    proof = "password" if user.id == proven_user else "organisation"
    if link is not None and proof == "password" and link.proof != "password":
        link.proof = proof
    if link is None:
        link = SsoLink(
            provider_id=provider.id, subject=identity.subject, user_id=user.id, proof=proof
        )
        session.add(link)
        await session.flush()
        await audit.record(
            session,
            org_id,
            actor,
            "sso.link",
            "user",
            user.id,
            provider=provider.name,
            subject=identity.subject[:200],
            proof=proof,
        )
    if membership is None:
        assert role is not None  # refused above otherwise
        membership = Membership(user_id=user.id, role=role)
        session.add(membership)
        await session.flush()
        await audit.record(
            session,
            org_id,
            actor,
            "sso.user.create",
            "user",
            user.id,
            after={
                "email": email,
                "role": role,
                "provider": provider.name,
                "groups": list(identity.groups)[:50],
            },
        )
    elif role is not None and membership.role != role and membership.role != "owner":
        # Owners are made and unmade in Kaizen only; every other role follows the IdP.
        before = membership.role
        membership.role = role
        await audit.record(
            session,
            org_id,
            actor,
            "sso.role.change",
            "user",
            user.id,
            before={"role": before},
            after={"role": role},
            provider=provider.name,
        )
    await _sync_teams(session, org_id, actor, user.id, wanted_teams, managed_teams)
    await audit.record(
        session,
        org_id,
        actor,
        "sso.login",
        "user",
        user.id,
        email=email,
        provider=provider.name,
        protocol=provider.type,
        groups=list(identity.groups)[:50],
    )
    return user.id


async def _sync_teams(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    user_id: uuid.UUID,
    wanted: set[str],
    managed: set[str],
) -> None:
    """Teams named by the mapping follow the IdP groups; other teams are left alone."""
    if not managed:
        return
    teams = {t.name: t for t in await session.scalars(select(Team).where(Team.name.in_(managed)))}
    for name in sorted(wanted - teams.keys()):
        team = Team(id=uuid.uuid4(), name=name, description="created by SSO group mapping")
        session.add(team)
        await session.flush()
        teams[name] = team
        await audit.record(session, org_id, actor, "team.create", "team", team.id, name=name)
    current = set(
        await session.scalars(
            select(TeamMember.team_id).where(
                TeamMember.user_id == user_id,
                TeamMember.team_id.in_([t.id for t in teams.values()]),
            )
        )
    )
    for name, team in sorted(teams.items()):
        if name in wanted and team.id not in current:
            session.add(TeamMember(team_id=team.id, user_id=user_id))
            await audit.record(
                session, org_id, actor, "sso.team.add", "team", team.id, user_id=str(user_id)
            )
        elif name not in wanted and team.id in current:
            await session.execute(
                delete(TeamMember).where(
                    TeamMember.team_id == team.id, TeamMember.user_id == user_id
                )
            )
            await audit.record(
                session, org_id, actor, "sso.team.remove", "team", team.id, user_id=str(user_id)
            )
    await session.flush()


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
