"""Webhooks: subscriptions, the durable delivery outbox, and HMAC-signed delivery.

`emit` writes one `WebhookDelivery` row per subscribed webhook inside the caller's
transaction, so an event is queued exactly when the change that caused it commits. The
notification worker claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, and a lease so
no other replica picks them while a request is in flight), posts them, and records the
outcome: 2xx is delivered; anything else is retried with exponential back-off until the
attempt limit, then failed. The rows are the delivery log.

Each request is signed as Standard Webhooks (`webhook-id` = the row id, `webhook-timestamp`,
`webhook-signature`; webhook_signing) and carries `X-Kaizen-Event`, `X-Kaizen-Delivery` (the
row id) and, while KAIZEN_WEBHOOK_LEGACY_SIGNATURE is on (this release's default), our
former `X-Kaizen-Signature`. The signing secret lives in the secret store under
`webhooks/<id>/secret`, shown once at creation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane import observability
from control_plane.db.base import utcnow
from control_plane.db.models import Webhook, WebhookDelivery
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Invalid, NotFound
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate
from control_plane.services.secrets import SecretStore
from control_plane.services.webhook_signing import (
    SECRET_PREFIX,
    legacy_signature,
    new_secret,
    standard_headers,
)
from policy.net.outbound import OutboundGuard, OutboundRefused

EVENTS = (
    "approval.requested",
    "approval.decided",
    "budget.soft_limit",
    "budget.hard_limit",
    "plan.quota_warning",
    "security.repeated_denials",
    "security.bundle_verification_failed",
)
# A claimed delivery is invisible to other workers this long (far above the HTTP timeout).
LEASE = timedelta(minutes=5)
MAX_BACKOFF_SECONDS = 3600.0


def secret_name(webhook_id: uuid.UUID) -> str:
    return f"webhooks/{webhook_id}/secret"


def _prefix(secret: str) -> str:
    """Enough of a generated secret to tell it apart; nothing of one the user chose."""
    return secret[:10] if secret.startswith(SECRET_PREFIX) else ""


def _jsonable(value: Any) -> Any:
    def default(item: object) -> str:
        return item.isoformat() if isinstance(item, datetime) else str(item)

    return json.loads(json.dumps(value, default=default))


# -- subscriptions ----------------------------------------------------------------------------


async def check_url(guard: OutboundGuard, url: str) -> None:
    """Refuse a URL the platform would not deliver to (internal addresses, `user@host`,
    non-http schemes) when it is saved; delivery checks again on every connection."""
    try:
        await guard.check(url, allow_unresolved=True)
    except OutboundRefused as refused:
        raise Invalid(
            f"url: {refused.message}", details=[{"field": "url", "message": refused.message}]
        ) from None


async def _webhook(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook:
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound("no such webhook")
    return webhook


async def create(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    url: str,
    events: Sequence[str],
    description: str,
    secret: str | None,
    guard: OutboundGuard,
) -> tuple[Webhook, str]:
    await check_url(guard, url)
    secret = secret or new_secret()
    webhook = Webhook(
        url=url,
        events=sorted(set(events)),
        description=description,
        enabled=True,
        secret_prefix=_prefix(secret),
        updated_at=utcnow(),
    )
    session.add(webhook)
    await session.flush()
    await store.put(organization_id, secret_name(webhook.id), secret, session=session)
    await audit.record(
        session,
        organization_id,
        actor,
        "webhook.create",
        "webhook",
        webhook.id,
        url=url,
        events=webhook.events,
    )
    return webhook, secret


async def list_webhooks(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[Sequence[Webhook], str | None]:
    return await paginate(session, select(Webhook), Webhook, cursor, limit)


async def get(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook:
    return await _webhook(session, webhook_id)


async def update(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    webhook_id: uuid.UUID,
    changes: Mapping[str, Any],
    guard: OutboundGuard,
) -> Webhook:
    webhook = await _webhook(session, webhook_id)
    if "url" in changes:
        await check_url(guard, changes["url"])
    for field, value in changes.items():
        setattr(webhook, field, sorted(set(value)) if field == "events" else value)
    webhook.updated_at = utcnow()
    await audit.record(
        session, organization_id, actor, "webhook.update", "webhook", webhook.id, **changes
    )
    return webhook


async def rotate_secret(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    webhook_id: uuid.UUID,
    secret: str | None,
) -> tuple[Webhook, str]:
    webhook = await _webhook(session, webhook_id)
    secret = secret or new_secret()
    await store.put(organization_id, secret_name(webhook.id), secret, session=session)
    webhook.secret_prefix, webhook.updated_at = _prefix(secret), utcnow()
    await audit.record(
        session, organization_id, actor, "webhook.rotate_secret", "webhook", webhook.id
    )
    return webhook, secret


async def delete(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    webhook_id: uuid.UUID,
) -> None:
    webhook = await _webhook(session, webhook_id)
    await session.delete(webhook)
    await store.delete(organization_id, secret_name(webhook_id), session=session)
    await audit.record(
        session, organization_id, actor, "webhook.delete", "webhook", webhook_id, url=webhook.url
    )


async def deliveries(
    session: AsyncSession, webhook_id: uuid.UUID, status: str | None, cursor: str | None, limit: int
) -> tuple[Sequence[WebhookDelivery], str | None]:
    await _webhook(session, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return await paginate(session, query, WebhookDelivery, cursor, limit)


# -- the outbox -------------------------------------------------------------------------------


async def emit(
    session: AsyncSession, organization_id: uuid.UUID, event: str, data: Mapping[str, Any]
) -> int:
    """Queue `event` for every enabled webhook of the organisation subscribed to it."""
    assert event in EVENTS, event
    hooks = await session.scalars(
        select(Webhook).where(Webhook.organization_id == organization_id, Webhook.enabled.is_(True))
    )
    now = utcnow()
    queued = 0
    for hook in hooks:
        if event not in hook.events:
            continue
        payload = {
            "event": event,
            "organization_id": str(organization_id),
            "occurred_at": now.isoformat(),
            "data": _jsonable(data),
        }
        session.add(
            WebhookDelivery(
                organization_id=organization_id,
                webhook_id=hook.id,
                event=event,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        queued += 1
    if queued:
        await session.flush()
    return queued


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    organization_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    event: str
    body: bytes


async def claim_due(db: Database, now: datetime, limit: int = 50) -> list[Claimed]:
    """Due deliveries of every organisation, leased to this worker."""
    async with db.session(SYSTEM) as session:
        rows = (
            await session.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
        ).all()
        claimed = []
        for delivery, hook in rows:
            if not hook.enabled:
                delivery.status, delivery.last_error = "failed", "webhook disabled"
                delivery.updated_at = now
                continue
            delivery.next_attempt_at = now + LEASE
            body = json.dumps(
                {"id": str(delivery.id), **delivery.payload},
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
            claimed.append(
                Claimed(
                    delivery.id, delivery.organization_id, hook.id, hook.url, delivery.event, body
                )
            )
        return claimed


async def send(
    http: httpx.AsyncClient,
    claimed: Claimed,
    secret: str,
    timeout_seconds: float,
    *,
    legacy: bool = True,
) -> tuple[int | None, str | None]:
    """POST one delivery; the response status, or the network error or refusal. `http` is
    a guarded client (policy.net.outbound_http): it refuses internal addresses per connection.
    `legacy` adds X-Kaizen-Signature beside the Standard Webhooks headers."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "kaizen-studio-webhooks/1",
        "x-kaizen-event": claimed.event,
        "x-kaizen-delivery": str(claimed.id),
        **standard_headers(secret, str(claimed.id), timestamp, claimed.body),
    }
    if legacy:
        headers["x-kaizen-signature"] = legacy_signature(secret, timestamp, claimed.body)
    try:
        response = await http.post(
            claimed.url, content=claimed.body, headers=headers, timeout=timeout_seconds
        )
    except OutboundRefused as refused:
        observability.security_event("webhook_refused")
        return None, f"refused: {refused.message}"[:500]
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    error = None if response.is_success else f"HTTP {response.status_code}"
    return response.status_code, error


async def record(
    db: Database,
    claimed: Claimed,
    status_code: int | None,
    error: str | None,
    *,
    max_attempts: int,
    retry_base: float,
) -> str:
    """Log one attempt; schedule the next with back-off, or give up. Returns the status."""
    now = utcnow()
    async with db.session(SYSTEM) as session:
        delivery = await session.get(WebhookDelivery, claimed.id)
        if delivery is None:  # its webhook was deleted meanwhile
            return "deleted"
        delivery.attempts += 1
        delivery.last_status_code, delivery.last_error = status_code, error
        delivery.updated_at = now
        if error is None:
            delivery.status, delivery.delivered_at = "delivered", now
        elif delivery.attempts >= max_attempts:
            delivery.status = "failed"
        else:
            backoff = min(retry_base * 2 ** (delivery.attempts - 1), MAX_BACKOFF_SECONDS)
            delivery.next_attempt_at = now + timedelta(seconds=backoff)
        return delivery.status
