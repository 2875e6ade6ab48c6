"""Organisation email domains, proven by DNS: what an SSO provider may sign in.

An organisation claims a domain and gets a token; the claim grants nothing until the
domain's DNS answers a TXT record `kaizen-studio-verification=<token>`, looked up with a
real resolver (`KAIZEN_DNS_NAMESERVER`, default the system's). A domain is verified by one
organisation at most — the database's partial unique index decides races — so claiming a
domain first wins nothing and a second claimant is refused by name.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import OrganizationDomain, SsoDomain
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Invalid, NotFound, Unavailable
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate

TXT_PREFIX = "kaizen-studio-verification="
# Domains anyone can get an address at: verifying one would make its every user "yours".
# Not the Public Suffix List — the common free-mail providers and two-label suffixes.
SHARED_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "proton.me",
        "protonmail.com", "pm.me", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com",
        "yandex.ru", "yandex.com", "mail.ru", "qq.com", "163.com", "126.com", "zoho.com",
        "fastmail.com", "tutanota.com", "hey.com",
        "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "co.jp", "co.nz", "co.in",
        "com.br", "com.cn", "co.za", "github.io", "herokuapp.com", "vercel.app", "netlify.app",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Nameserver:
    """Where TXT lookups go: an explicit server, or None for the system resolver."""

    address: str | None
    port: int
    timeout: float

    @classmethod
    def parse(cls, value: str | None, timeout: float) -> Nameserver:
        """`ip`, `ip:port`, `[ipv6]:port` or a bare IPv6 address; None: the system's."""
        if not value:
            return cls(None, 53, timeout)
        host, port = value, "53"
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif value.count(":") == 1:
            host, _, port = value.partition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise Unavailable(f"KAIZEN_DNS_NAMESERVER: {value!r} is not ip[:port]")
        return cls(host, int(port), timeout)


def txt_value(token: str) -> str:
    return f"{TXT_PREFIX}{token}"


def _invalid(message: str) -> Invalid:
    return Invalid(f"domain: {message}", details=[{"field": "domain", "message": message}])


async def claim(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, domain: str
) -> OrganizationDomain:
    """A new, unverified claim (grants nothing) with the token to publish in DNS."""
    if domain in SHARED_DOMAINS:
        raise _invalid(f"{domain} is a shared mail or public-suffix domain; it cannot be claimed")
    if await session.scalar(
        select(OrganizationDomain.id).where(OrganizationDomain.domain == domain)
    ):
        raise Conflict(
            f"domain: {domain} is already claimed by this organisation",
            details=[{"field": "domain", "message": "already claimed"}],
        )
    row = OrganizationDomain(id=uuid.uuid4(), domain=domain, token=secrets.token_urlsafe(24))
    session.add(row)
    await session.flush()
    await audit.record(
        session, organization_id, actor, "domain.claim", "domain", row.id, domain=domain
    )
    return row


async def get(session: AsyncSession, domain_id: uuid.UUID) -> OrganizationDomain:
    row = await session.get(OrganizationDomain, domain_id)
    if row is None:
        raise NotFound("no such domain")
    return row


async def list_domains(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[Sequence[OrganizationDomain], str | None]:
    return await paginate(session, select(OrganizationDomain), OrganizationDomain, cursor, limit)


async def verified(session: AsyncSession) -> set[str]:
    """The session organisation's verified domains."""
    rows = await session.scalars(
        select(OrganizationDomain.domain).where(OrganizationDomain.verified_at.is_not(None))
    )
    return set(rows)


async def verified_elsewhere(db: Database, organization_id: uuid.UUID, domain: str) -> bool:
    """Whether another organisation holds `domain` verified (a SYSTEM read across tenants)."""
    async with db.session(SYSTEM) as session:
        other = await session.scalar(
            select(OrganizationDomain.id).where(
                OrganizationDomain.domain == domain,
                OrganizationDomain.verified_at.is_not(None),
                OrganizationDomain.organization_id != organization_id,
            )
        )
    return other is not None


def taken(domain: str) -> Conflict:
    return Conflict(
        f"domain: {domain} is already verified by another organisation",
        details=[{"field": "domain", "message": "verified by another organisation"}],
    )


async def lookup_txt(nameserver: Nameserver, domain: str) -> list[str]:
    """The TXT strings at `domain` (each record's strings joined, RFC 7208 §3.3)."""
    try:
        resolver = dns.asyncresolver.Resolver(configure=nameserver.address is None)
        if nameserver.address is not None:
            resolver.nameservers = [nameserver.address]
            resolver.port = nameserver.port
    except (ValueError, dns.exception.DNSException) as error:
        raise Unavailable(
            f"DNS is misconfigured (KAIZEN_DNS_NAMESERVER, /etc/resolv.conf): {error}"
        ) from None
    resolver.lifetime = nameserver.timeout
    try:
        answer = await resolver.resolve(domain, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise Unavailable(f"DNS did not answer for {domain}: {type(error).__name__}") from None
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


async def prove(nameserver: Nameserver, row_domain: str, token: str) -> None:
    """Raise unless the domain publishes this claim's token."""
    wanted = txt_value(token)
    records = await lookup_txt(nameserver, row_domain)
    if not any(hmac.compare_digest(r.strip(), wanted) for r in records):
        raise Invalid(
            f"domain: no TXT record {wanted!r} at {row_domain}; publish it and verify again",
            details=[{"field": "domain", "message": "verification TXT record not found"}],
        )


async def mark_verified(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, domain_id: uuid.UUID
) -> OrganizationDomain:
    """Record the proof; the unique index refuses a domain another organisation verified."""
    row = await get(session, domain_id)
    if row.verified_at is not None:
        return row
    row.verified_at = utcnow()
    # A race with another organisation ends here in IntegrityError (the partial unique
    # index); the caller turns it into `taken` once the transaction is rolled back.
    await session.flush()
    await audit.record(
        session, organization_id, actor, "domain.verify", "domain", row.id, domain=row.domain
    )
    return row


async def drop_stale_routes(db: Database, organization_id: uuid.UUID, domain: str) -> None:
    """Other organisations' SSO routes for a domain this one proved are void (pre-M8 data)."""
    async with db.session(SYSTEM) as session:
        await session.execute(
            delete(SsoDomain).where(
                SsoDomain.domain == domain, SsoDomain.organization_id != organization_id
            )
        )


async def remove(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, domain_id: uuid.UUID
) -> None:
    """Forget the claim; SSO providers of this organisation stop routing and signing it in."""
    row = await get(session, domain_id)
    await session.execute(delete(SsoDomain).where(SsoDomain.domain == row.domain))
    await session.delete(row)
    await audit.record(
        session,
        organization_id,
        actor,
        "domain.delete",
        "domain",
        row.id,
        domain=row.domain,
        was_verified=row.verified_at is not None,
    )
