"""Approval requests: a held call (`require_approval`) waiting for an approver.

A request is opened for a newly stored `require_approval` decision that the control plane
can attribute to a sidecar of one of the organisation's gateways and to a bundle revision
it published (`approval_sources.py`); its id is the decision id, which the sidecar already
gave the caller as `approval_request_id`. Who may decide is the roles the signed bundle
revision names for the packages that held the call (RegoPolicy `spec.approvers`) or, when
it names none, anyone whose role may `decide` approvals; never anything in the ingested
text. The requester never decides their own request, whichever credential (their login or
one of their API keys) they use. Approval mints the single-use grant of docs/runtime-protocols.md,
bound to the gateway that held the call and, for `/invoke` and `/run`, to the body's hash;
only its claims are stored, and it is signed again for the requester each time they fetch
it. Pending requests past `expires_at` expire lazily when read and in the worker's sweep.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane import observability
from control_plane.db.base import utcnow
from control_plane.db.models import ApprovalRequest, Gateway
from control_plane.errors import Conflict, Forbidden, Invalid, NotFound
from control_plane.services import audit, platform_gateways, roles, webhooks
from control_plane.services.approval_sources import (
    NotAttributable,
    attribute,
    caller_user_id,
)
from control_plane.services.approval_sources import (
    role_may_decide as role_may_decide,  # notifications pick approvers with it
)
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.pagination import paginate
from control_plane.services.principal import Principal
from policy.bundles.gateway_binding import binding_of_hash
from policy.compile.compiler import canonical_json

if TYPE_CHECKING:  # gateways → notifications → approvals: a type only, at run time
    from control_plane.services.gateways import GatewayIdentity

GRANT_TYP = "kaizen-approval+jwt"
GRANT_AUDIENCE = "kaizen-sidecar"
STATUSES = ("pending", "approved", "denied", "expired")
SYSTEM_ACTOR = Actor("system", None, "approval expiry")
log = logging.getLogger(__name__)


def arguments_hash(tool: object) -> str:
    """SHA-256 hex of the canonical JSON of `tool.arguments` (or `{}`), as grants bind them."""
    arguments = tool.get("arguments") if isinstance(tool, Mapping) else None
    return hashlib.sha256(canonical_json(dict(arguments or {}))).hexdigest()


def may_decide(caller: Principal, request: ApprovalRequest) -> bool:
    if caller.scopes and not roles.scope_allows(caller.scopes, "approvals", "decide"):
        return False
    return role_may_decide(caller.role, request.approver_roles)


async def is_requester(session: AsyncSession, caller: Principal, request: ApprovalRequest) -> bool:
    """The caller is the requester: the same user (any of their credentials) or subject."""
    if caller.subject == request.principal:
        return True
    if request.requester_user_id is None:
        return False
    return await caller_user_id(session, caller) == request.requester_user_id


# -- opening requests (from ingest) -----------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    request: ApprovalRequest
    decision: Mapping[str, Any]


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


async def open_requests(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    decisions: Sequence[Mapping[str, Any]],
    *,
    ttl: timedelta,
) -> list[ApprovalRequest]:
    """One pending request per `require_approval` decision (decision rows as stored)."""
    opened: list[ApprovalRequest] = []
    now = utcnow()
    for row in decisions:
        decision_input, result = row.get("input") or {}, row.get("result") or {}
        principal = decision_input.get("principal") or {}
        resource = decision_input.get("resource") or {}
        fields = (
            _text(row.get("decision_id"), 64),
            _text(principal.get("id") if isinstance(principal, Mapping) else None, 320),
            _text(decision_input.get("action"), 64),
            _text(resource.get("id") if isinstance(resource, Mapping) else None, 320),
        )
        request_id, subject, action, resource_id = fields
        if not (request_id and subject and action and resource_id):
            continue  # nothing a grant could be bound to (e.g. masked at source)
        existing = await session.scalar(
            select(ApprovalRequest.id).where(ApprovalRequest.request_id == request_id)
        )
        if existing is not None:
            continue
        try:
            args_hash = arguments_hash(decision_input.get("tool"))
        except (TypeError, ValueError):
            continue
        try:
            source = await attribute(session, organization_id, row)
        except NotAttributable as refused:
            log.warning("decision %s opens no approval request: %s", request_id, refused)
            continue
        request = ApprovalRequest(
            organization_id=organization_id,
            request_id=request_id,
            status="pending",
            principal=subject,
            action=action,
            resource=resource_id,
            args_hash=args_hash,
            reasons=[r[:1000] for r in result.get("reasons") or () if isinstance(r, str)][:20],
            approver_roles=source.approver_roles,
            requester_user_id=source.requester_user_id,
            gateway_id=source.gateway_id,
            body_hash=source.body_hash,
            bundle_revision=source.bundle_revision,
            decision_time=row.get("time") or now,
            expires_at=now + ttl,
            email_next_attempt_at=now,
        )
        session.add(request)
        await session.flush()
        await audit.record(
            session,
            organization_id,
            actor,
            "approval.request",
            "approval",
            request_id,
            principal=subject,
            requested_action=action,
            resource=resource_id,
            approver_roles=request.approver_roles,
            bundle_revision=source.bundle_revision,
        )
        await webhooks.emit(session, organization_id, "approval.requested", view(request))
        opened.append(request)
    observability.approvals("opened", len(opened))
    return opened


# -- reading, deciding, expiring --------------------------------------------------------------


def view(request: ApprovalRequest) -> dict[str, Any]:
    """The request as events and the API show it (never the grant)."""
    return {
        "id": request.request_id,
        "status": request.status,
        "principal": request.principal,
        "action": request.action,
        "resource": request.resource,
        "args_hash": request.args_hash,
        "reasons": list(request.reasons),
        "approver_roles": list(request.approver_roles),
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "decided_at": request.decided_at,
        "decided_by": request.decided_by,
        "comment": request.comment,
    }


async def expire_due(session: AsyncSession, now: datetime | None = None, limit: int = 500) -> int:
    """Mark pending requests past `expires_at` expired (every organisation the session sees)."""
    now = now or utcnow()
    due = (
        await session.scalars(
            select(ApprovalRequest)
            .where(ApprovalRequest.status == "pending", ApprovalRequest.expires_at <= now)
            .order_by(ApprovalRequest.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for request in due:
        request.status, request.decided_at = "expired", now
        await audit.record(
            session,
            request.organization_id,
            SYSTEM_ACTOR,
            "approval.expire",
            "approval",
            request.request_id,
        )
        await webhooks.emit(session, request.organization_id, "approval.decided", view(request))
    observability.approvals("expired", len(due))
    return len(due)


async def list_requests(
    session: AsyncSession, status: str | None, cursor: str | None, limit: int
) -> tuple[Sequence[ApprovalRequest], str | None]:
    if status is not None and status not in STATUSES:
        raise Invalid(
            f"status must be one of {', '.join(STATUSES)}",
            details=[{"field": "status", "message": "unknown status"}],
        )
    await expire_due(session)
    query: Select[Any] = select(ApprovalRequest)
    if status is not None:
        query = query.where(ApprovalRequest.status == status)
    return await paginate(session, query, ApprovalRequest, cursor, limit)


async def _request(
    session: AsyncSession, request_id: str, *, lock: bool = False
) -> ApprovalRequest:
    query = select(ApprovalRequest).where(ApprovalRequest.request_id == request_id)
    request = await session.scalar(query.with_for_update() if lock else query)
    if request is None:
        raise NotFound("no such approval request")
    return request


async def get(session: AsyncSession, request_id: str) -> ApprovalRequest:
    request = await _request(session, request_id)
    if request.status == "pending" and request.expires_at <= utcnow():
        await expire_due(session)
    return request


async def decide(
    session: AsyncSession,
    caller: Principal,
    actor: Actor,
    request_id: str,
    *,
    approve: bool,
    comment: str | None,
    grant_ttl: timedelta,
) -> ApprovalRequest:
    request = await _request(session, request_id, lock=True)
    verb = "approve" if approve else "deny"
    if await is_requester(session, caller, request):
        raise Forbidden(f"the requester cannot {verb} their own request")
    if not may_decide(caller, request):
        named = ", ".join(request.approver_roles) or "a role that may decide approvals"
        raise Forbidden(f"only approvers ({named}) may {verb} this request")
    now = utcnow()
    if request.status == "pending" and request.expires_at <= now:
        raise Conflict("the approval request has expired", details=[{"status": "expired"}])
    if request.status != "pending":
        raise Conflict(
            f"the approval request is already {request.status}",
            details=[{"status": request.status}],
        )
    request.status = "approved" if approve else "denied"
    request.decided_at, request.decided_by, request.comment = now, caller.subject, comment
    if approve:
        request.grant_jti = uuid.uuid4().hex
        request.grant_issued_at, request.grant_expires_at = now, now + grant_ttl
    await audit.record(
        session,
        caller.organization_id,
        actor,
        f"approval.{verb}",
        "approval",
        request.request_id,
        principal=request.principal,
        comment=comment,
        grant_jti=request.grant_jti,
        grant_expires_at=request.grant_expires_at,
    )
    await webhooks.emit(session, caller.organization_id, "approval.decided", view(request))
    return request


def grant_claims(request: ApprovalRequest, issuer: str, gateway: str) -> dict[str, Any]:
    """`gateway`: the binding (policy/bundles/gateway_binding.py) of the gateway that held
    the call."""
    assert request.grant_jti is not None
    assert request.grant_issued_at is not None
    assert request.grant_expires_at is not None
    return {
        "iss": issuer,
        "aud": GRANT_AUDIENCE,
        "org": str(request.organization_id),
        "sub": request.principal,
        "action": request.action,
        "resource": request.resource,
        "args": request.args_hash,
        "gw": gateway,
        "body": request.body_hash,
        "approval_request_id": request.request_id,
        "jti": request.grant_jti,
        "iat": int(request.grant_issued_at.timestamp()),
        "exp": int(request.grant_expires_at.timestamp()),
    }


@dataclass(frozen=True)
class Detail:
    """A request as its reader may see it: the grant only for its requester, once approved."""

    request: ApprovalRequest
    grant: str | None


async def detail(
    session: AsyncSession,
    caller: Principal,
    actor: Actor,
    request_id: str,
    keys: KeyRing,
    issuer: str,
) -> Detail:
    """One request. Its requester may always read it; anyone else needs `approvals:read`."""
    request = await get(session, request_id)
    if not await is_requester(session, caller, request):
        caller.require("approvals", "read")
    return Detail(request, await grant_for(session, caller, actor, request, keys, issuer))


async def grant_for(
    session: AsyncSession,
    caller: Principal,
    actor: Actor,
    request: ApprovalRequest,
    keys: KeyRing,
    issuer: str,
) -> str | None:
    """The signed grant, for the requester of an approved request only (audited)."""
    if request.status != "approved" or not await is_requester(session, caller, request):
        return None
    if request.grant_expires_at is None or request.grant_expires_at <= utcnow():
        return None
    # A grant names the gateway that held the call; without it (requests opened before
    # grants were bound, or a deleted gateway) no grant is issued.
    gateway = await session.get(Gateway, request.gateway_id) if request.gateway_id else None
    if gateway is None:
        return None
    credential_hash: str | None = gateway.credential_hash
    if gateway.mode == platform_gateways.PLATFORM_MODE:  # held at a shared gateway (ADR 0012)
        shared = await platform_gateways.placement_of(session)
        credential_hash = shared.credential_hash if shared is not None else None
    if credential_hash is None:
        return None
    claims = grant_claims(request, issuer, binding_of_hash(credential_hash))
    token = keys.sign(claims, headers={"typ": GRANT_TYP})
    await audit.record(
        session,
        caller.organization_id,
        actor,
        "approval.grant_fetch",
        "approval",
        request.request_id,
        grant_jti=request.grant_jti,
    )
    return token


async def redeem_grant(
    session: AsyncSession, identity: GatewayIdentity, jti: str
) -> ApprovalRequest:
    """Spend a grant once, for a sidecar of the gateway it was granted at (a sidecar without
    shared Redis asks here; the row lock makes concurrent redemptions single use)."""
    request = await session.scalar(
        select(ApprovalRequest).where(ApprovalRequest.grant_jti == jti).with_for_update()
    )
    if request is None or request.status != "approved":
        raise NotFound("no approval grant with this jti")
    if request.gateway_id != identity.gateway_id:
        raise Forbidden("the approval grant was granted for another gateway")
    now = utcnow()
    if request.grant_used_at is not None:
        raise Conflict(
            "the approval grant was already used",
            details=[{"used_at": request.grant_used_at.isoformat()}],
        )
    if request.grant_expires_at is None or request.grant_expires_at <= now:
        raise Conflict("the approval grant has expired", details=[{"status": "expired"}])
    request.grant_used_at = now
    await audit.record(
        session,
        identity.organization_id,
        identity.actor,
        "approval.grant_use",
        "approval",
        request.request_id,
        grant_jti=jti,
    )
    return request
