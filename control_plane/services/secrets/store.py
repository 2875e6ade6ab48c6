"""The secrets interface (`SecretStore`), its names and values: what every backend checks."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import Invalid

log = logging.getLogger(__name__)

MAX_NAME = 300
MAX_VALUE = 64 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_.@-]+")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    created_at: datetime | None
    updated_at: datetime | None


class SecretStore(Protocol):
    async def put(
        self, organization_id: UUID, name: str, value: str, *, session: AsyncSession | None = None
    ) -> None: ...

    async def get(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> str: ...

    async def delete(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> None: ...

    async def list(
        self, organization_id: UUID, prefix: str = "", *, session: AsyncSession | None = None
    ) -> list[SecretInfo]: ...

    async def close(self) -> None: ...


def check_name(name: str, field: str = "name") -> str:
    """A path of `/`-separated segments of letters, digits and `_.@-` (safe as a Vault path)."""
    segments = name.split("/")
    if (
        not name
        or len(name) > MAX_NAME
        or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments)
    ):
        raise Invalid(
            f"{field}: a secret name is 1-{MAX_NAME} characters of path segments "
            "(letters, digits, '_', '.', '@', '-') separated by '/'",
            details=[{"field": field, "message": "invalid secret name"}],
        )
    return name


def check_value(value: str) -> None:
    if not value or len(value.encode()) > MAX_VALUE:
        raise Invalid(
            f"value: a secret is 1 to {MAX_VALUE} bytes",
            details=[{"field": "value", "message": "empty or too long"}],
        )


def secret_context(organization_id: UUID, name: str) -> bytes:
    return f"{organization_id}/{name}".encode()
