"""What an approval request may be opened from, and whose facts it takes.

Only a `require_approval` decision that a gateway credential of this organisation shipped
from its sidecar (`source = "sidecar"`, a gateway id) and that names a bundle revision the
organisation published opens a request. Decisions uploaded in OPA's format, or naming a
revision or a package that revision does not have, open none.

Who may decide is read from that stored, signed bundle revision: data.json
`kaizen.approvals.<package>` (RegoPolicy `spec.approvers`) for each package whose
`require_approval` matched; never from reasons or any other text of the ingested record.
The requester is resolved to a user id (a user's own API keys count as that user), so an
approver is compared by identity, not by subject string.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import tarfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ApiKey, BundleRevision, Membership, User
from control_plane.services import roles
from control_plane.services.principal import Principal
from policy.compile.rego_compile import read_package

log = logging.getLogger(__name__)

_MATCHED = re.compile(r"abac:(?P<package>[A-Za-z_][\w.]*)\.require_approval")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_BUNDLE_BYTES = 256 * 1024 * 1024


class NotAttributable(Exception):
    """The decision cannot open an approval request; the message says why."""


@dataclass(frozen=True)
class RevisionPolicy:
    packages: frozenset[str]
    approvers: Mapping[str, tuple[str, ...]]  # package -> roles (RegoPolicy spec.approvers)


@dataclass(frozen=True)
class Attributed:
    approver_roles: list[str]
    requester_user_id: uuid.UUID | None
    gateway_id: uuid.UUID
    body_hash: str | None
    bundle_revision: int


# Revisions never change once stored: keyed by their bundle's SHA-256.
_cache: dict[str, RevisionPolicy] = {}
_cache_lock = threading.Lock()


def revision_policy(bundle: bytes) -> RevisionPolicy:
    """Rego packages and named approvers of a bundle this control plane built and stored."""
    raw = gzip.decompress(bundle)
    if len(raw) > _MAX_BUNDLE_BYTES:
        raise NotAttributable("the stored bundle is too large to read")
    packages: set[str] = set()
    data: Any = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            name = member.name.lstrip("/")
            handle = archive.extractfile(member)
            if handle is None:
                continue
            if name == "data.json":
                data = json.loads(handle.read())
            elif name.endswith(".rego"):
                package = read_package(handle.read().decode("utf-8", "replace"))
                if package:
                    packages.add(package)
    named = (data.get("kaizen") or {}).get("approvals") or {}
    approvers = {
        str(package): tuple(r for r in roles_ if isinstance(r, str))
        for package, roles_ in named.items()
        if isinstance(roles_, list)
    }
    return RevisionPolicy(frozenset(packages), approvers)


async def _stored_revision(
    session: AsyncSession, organization_id: uuid.UUID, revision: int
) -> RevisionPolicy:
    row = (
        await session.execute(
            select(BundleRevision.sha256, BundleRevision.bundle).where(
                BundleRevision.organization_id == organization_id,
                BundleRevision.revision == revision,
            )
        )
    ).first()
    if row is None:
        raise NotAttributable(f"bundle revision {revision} was never published here")
    sha256, bundle = row
    with _cache_lock:
        cached = _cache.get(sha256)
    if cached is not None:
        return cached
    policy = revision_policy(bundle)
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[sha256] = policy
    return policy


def combined_approvers(sets: Sequence[Sequence[str]]) -> list[str]:
    """The roles every matched package accepts; [] when none named any (the default)."""
    if not any(sets):
        return []
    distinct = {tuple(sorted(s)) for s in sets}
    if len(distinct) == 1:
        return list(next(iter(distinct)))
    # Several packages held the call: an approver must satisfy each of them.
    qualifying = [r for r in roles.ROLES if all(role_may_decide(r, list(s)) for s in sets)]
    if not qualifying:
        raise NotAttributable("no role may approve for every package that held the call")
    return qualifying


def role_may_decide(role: str, named: Sequence[str]) -> bool:
    """A named role, or one that includes it; with none named, a role that may `decide`."""
    if not named:
        return roles.role_allows(role, "approvals", "decide")
    return any(
        role == approver
        or (approver in roles.ROLES and role in roles.ROLES and roles.role_within(approver, role))
        for approver in named
    )


async def _requester(
    session: AsyncSession, organization_id: uuid.UUID, subject: str
) -> uuid.UUID | None:
    kind, _, name = subject.partition(":")
    if kind == "user":
        found = await session.scalar(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == organization_id, User.email == name)
        )
        return found
    if kind == "apikey":
        creator = await session.scalar(
            select(ApiKey.created_by).where(
                ApiKey.organization_id == organization_id, ApiKey.name == name
            )
        )
        return creator
    return None


async def attribute(
    session: AsyncSession, organization_id: uuid.UUID, row: Mapping[str, Any]
) -> Attributed:
    """The facts of the request `row` (a stored decision) may open; NotAttributable if none."""
    if row.get("source") != "sidecar":
        raise NotAttributable("only a decision shipped by a gateway's sidecar opens a request")
    gateway_id = row.get("gateway_id")
    if not isinstance(gateway_id, uuid.UUID):
        raise NotAttributable("the decision was not ingested with a gateway credential")
    decision_input, result = row.get("input") or {}, row.get("result") or {}
    try:
        revision = int(str(result.get("bundle_revision")))
    except ValueError:
        raise NotAttributable("the decision names no bundle revision") from None
    policy = await _stored_revision(session, organization_id, revision)
    matched = result.get("matched_rules") or []
    packages = sorted(
        {
            found["package"]
            for rule in matched
            if isinstance(rule, str) and (found := _MATCHED.fullmatch(rule))
        }
    )
    unknown = [p for p in packages if p not in policy.packages]
    if unknown:
        raise NotAttributable(f"bundle revision {revision} has no package {unknown[0]}")
    approvers = combined_approvers([policy.approvers.get(p, ()) for p in packages])
    body_hash = None
    if decision_input.get("channel") != "mcp":
        request = decision_input.get("request") or {}
        body_hash = request.get("body_sha256") if isinstance(request, Mapping) else None
        if not isinstance(body_hash, str) or not _SHA256_HEX.fullmatch(body_hash):
            raise NotAttributable("the sidecar did not see the request body a grant must bind")
    principal = decision_input.get("principal") or {}
    subject = principal.get("id") if isinstance(principal, Mapping) else None
    requester = await _requester(session, organization_id, subject or "")
    return Attributed(approvers, requester, gateway_id, body_hash, revision)


async def caller_user_id(session: AsyncSession, caller: Principal) -> uuid.UUID | None:
    """The user behind a caller: itself, or the user who created the API key it uses."""
    if caller.kind == "user":
        return caller.id
    creator = await session.scalar(select(ApiKey.created_by).where(ApiKey.id == caller.id))
    return creator
