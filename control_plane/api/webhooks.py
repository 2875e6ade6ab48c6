"""Webhooks: subscriptions (admin) and their delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from control_plane.api.deps import Cursor, Limit, SettingsDep, Tenant, get_secrets, requires
from control_plane.db.models import Webhook
from control_plane.schemas import webhooks as schemas
from control_plane.schemas.base import Page
from control_plane.services import webhooks
from control_plane.services.secrets import SecretStore

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

Read = Annotated[Tenant, Depends(requires("webhooks", "read"))]
Create = Annotated[Tenant, Depends(requires("webhooks", "create"))]
Update = Annotated[Tenant, Depends(requires("webhooks", "update"))]
Delete = Annotated[Tenant, Depends(requires("webhooks", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


def _store(request: Request) -> SecretStore:
    store: SecretStore = get_secrets(request)
    return store


def _created(webhook: Webhook, secret: str) -> schemas.WebhookCreated:
    return schemas.WebhookCreated(
        **schemas.Webhook.model_validate(webhook).model_dump(), secret=secret
    )


@router.post("", status_code=201, responses=ERRORS)
async def create_webhook(
    body: schemas.WebhookCreate, tenant: Create, request: Request, settings: SettingsDep
) -> schemas.WebhookCreated:
    """Subscribe a URL to events; `secret` (given or generated) is shown once."""
    async with tenant.session() as session:
        webhook, secret = await webhooks.create(
            session,
            _store(request),
            tenant.organization_id,
            tenant.actor,
            url=body.url,
            events=body.events,
            description=body.description,
            secret=body.secret,
            guard=settings.outbound_guard,
        )
        return _created(webhook, secret)


@router.get("", responses=ERRORS)
async def list_webhooks(
    tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[schemas.Webhook]:
    async with tenant.session() as session:
        rows, next_cursor = await webhooks.list_webhooks(session, cursor, limit)
        items = [schemas.Webhook.model_validate(w) for w in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{webhook_id}", responses=ERRORS)
async def get_webhook(webhook_id: uuid.UUID, tenant: Read) -> schemas.Webhook:
    async with tenant.session() as session:
        return schemas.Webhook.model_validate(await webhooks.get(session, webhook_id))


@router.patch("/{webhook_id}", responses=ERRORS)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: schemas.WebhookUpdate,
    tenant: Update,
    settings: SettingsDep,
) -> schemas.Webhook:
    async with tenant.session() as session:
        webhook = await webhooks.update(
            session,
            tenant.organization_id,
            tenant.actor,
            webhook_id,
            body.model_dump(exclude_unset=True),
            settings.outbound_guard,
        )
        return schemas.Webhook.model_validate(webhook)


@router.post("/{webhook_id}/secret", status_code=201, responses=ERRORS)
async def rotate_secret(
    webhook_id: uuid.UUID,
    tenant: Update,
    request: Request,
    body: schemas.SecretRotate | None = None,
) -> schemas.WebhookCreated:
    """Replace the signing secret (given or generated); the new one is shown once."""
    async with tenant.session() as session:
        webhook, secret = await webhooks.rotate_secret(
            session,
            _store(request),
            tenant.organization_id,
            tenant.actor,
            webhook_id,
            body.secret if body else None,
        )
        return _created(webhook, secret)


@router.delete("/{webhook_id}", status_code=204, responses=ERRORS)
async def delete_webhook(webhook_id: uuid.UUID, tenant: Delete, request: Request) -> Response:
    async with tenant.session() as session:
        await webhooks.delete(
            session, _store(request), tenant.organization_id, tenant.actor, webhook_id
        )
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", responses=ERRORS)
async def list_deliveries(
    webhook_id: uuid.UUID,
    tenant: Read,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> Page[schemas.Delivery]:
    """The delivery log: each event sent to this webhook, its attempts and last response."""
    async with tenant.session() as session:
        rows, next_cursor = await webhooks.deliveries(session, webhook_id, status, cursor, limit)
        items = [schemas.Delivery.model_validate(d) for d in rows]
    return Page(items=items, next_cursor=next_cursor)
