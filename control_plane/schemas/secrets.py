"""Secrets as the API shows them: names and timestamps, never values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import Field, SecretStr

from control_plane.schemas.base import Input, Output

ProviderName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="The name agents give as `api_key_secret` in their model config.",
    ),
]


class ProviderKeyPut(Input):
    api_key: SecretStr = Field(min_length=1, max_length=8192, description="Write-only.")


class SecretInfo(Output):
    name: str
    created_at: datetime | None
    updated_at: datetime | None
