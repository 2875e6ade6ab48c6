from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from control_plane.schemas.base import Description, Input, Output
from control_plane.schemas.fleet import Url

Event = Literal[
    "approval.requested",
    "approval.decided",
    "budget.soft_limit",
    "budget.hard_limit",
    "plan.quota_warning",
    "security.repeated_denials",
    "security.bundle_verification_failed",
]
Events = Annotated[list[Event], Field(min_length=1, max_length=20)]
SigningSecret = Annotated[
    str, StringConstraints(min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$")
]


class WebhookCreate(Input):
    url: Url
    events: Events
    description: Description = ""
    secret: SigningSecret | None = Field(
        default=None, description="HMAC signing secret; generated (and shown once) if absent."
    )


class WebhookUpdate(Input):
    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("url", "events", "description", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, not null")
        return value


class SecretRotate(Input):
    secret: SigningSecret | None = None


class Webhook(Output):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    secret_prefix: str = Field(description="The start of a generated secret; empty for yours.")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(
        description="Shown once: verify each delivery's webhook-signature (Standard Webhooks) "
        "with it."
    )


class Delivery(Output):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]
