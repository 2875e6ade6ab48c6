"""Secrets as the API shows them: names and timestamps, never values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

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
    provider: Literal["openai", "anthropic"] | None = Field(
        default=None,
        description="Whose key this is (its host: api.openai.com, api.anthropic.com); "
        "default: what the name says (`openai`, `openai-…`, `anthropic`, `anthropic-…`).",
    )
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="The provider endpoint the key is for; gateways send the key to this "
        "URL's host only, instead of the provider's own. Setting it needs the admin role.",
    )


class SecretInfo(Output):
    name: str
    created_at: datetime | None
    updated_at: datetime | None
