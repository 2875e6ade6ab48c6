"""Gateway settings from `KAIZEN_*` environment variables (CONTRACTS.md "Configuration")."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAIZEN_", extra="ignore")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    # The gateway's credential: signs nothing here, but keys the decision header (HS256)
    # and authenticates executions ingest. Required.
    gateway_token: SecretStr
    gateway_id: str | None = None  # serve deployments naming this id; all when unknown
    control_plane_url: str = "http://127.0.0.1:8000"
    sidecar_url: str = "http://127.0.0.1:9192"
    # Static deployments: a signed bundle file and the JWKS that verifies it.
    gateway_bundle: Path | None = None
    gateway_jwks: Path | None = None
    gateway_bundle_scope: str | None = None
    # Public URL of this gateway (as callers reach it, through Envoy) for RFC 9728 metadata.
    gateway_public_url: str | None = None
    gateway_prices: str | None = None  # JSON {model: [usd per 1M input, per 1M output]}
    gateway_ingest_batch: int = 500
    gateway_ingest_buffer: int = 100_000
    log_level: str = "INFO"

    @field_validator("gateway_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("KAIZEN_GATEWAY_TOKEN must be the gateway's credential (kgw_…)")
        return value
