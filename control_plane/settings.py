"""Runtime configuration, read from `KAIZEN_*` environment variables (CONTRACTS.md)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(os.environ.get("KAIZEN_HOME") or Path.home() / ".kaizen-studio")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAIZEN_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "kaizen:"
    cp_host: str = "127.0.0.1"
    cp_port: int = 8000
    control_plane_url: str = "http://127.0.0.1:8000"
    secrets_backend: str = "database"
    # Base64 of 32 bytes; when unset, a key file is created under `home` on first start.
    master_key: str | None = None

    issuer: str = "kaizen-studio"
    audience: str = "kaizen-studio-api"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    max_body_bytes: int = 1024 * 1024
    max_ingest_bytes: int = 16 * 1024 * 1024
    login_attempts_per_window: int = 10
    login_window_seconds: int = 300
    log_json: bool = True
    log_level: str = "INFO"

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home / 'kaizen.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
