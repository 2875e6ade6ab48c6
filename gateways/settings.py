"""Gateway settings from `KAIZEN_*` environment variables (CONTRACTS.md "Configuration")."""

from __future__ import annotations

import os
from datetime import datetime
from functools import cached_property
from pathlib import Path

from policy.net.outbound import OutboundGuard, parse_cidrs
from pydantic import AliasChoices, AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _vault(field: str) -> AliasChoices:
    """`KAIZEN_<FIELD>`, or Vault's own variable (`VAULT_ADDR`, `VAULT_TOKEN`, …)."""
    return AliasChoices(field, f"KAIZEN_{field.upper()}", field.upper())


def _default_home() -> Path:
    return Path(os.environ.get("KAIZEN_HOME") or Path.home() / ".kaizen-studio")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAIZEN_", extra="ignore")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    # The gateway's credential: signs nothing here, but keys the decision header (HS256)
    # and authenticates executions ingest. Required.
    gateway_token: SecretStr
    gateway_id: str | None = None  # serve deployments naming this id (else: asked of the CP)
    home: Path = Field(default_factory=_default_home)  # last-known-good bundle: home/gateway
    control_plane_url: str = "http://127.0.0.1:8000"
    sidecar_url: str = "http://127.0.0.1:9192"
    # Static deployments (instead of following the control plane): a signed bundle file
    # and the JWKS that verifies it. KAIZEN_GATEWAY_JWKS alone pins the keys the
    # control plane's bundles must be signed with (like KAIZEN_SIDECAR_JWKS).
    gateway_bundle: Path | None = None
    gateway_jwks: Path | None = None
    # Bundle trust, as the sidecar's: the scope this gateway is bound to (KAIZEN_SCOPE or
    # KAIZEN_GATEWAY_BUNDLE_SCOPE; unset: pinned at first contact), the floor every bundle
    # must clear even on a fresh gateway (KAIZEN_BUNDLE_MIN_REVISION, KAIZEN_BUNDLE_NOT_BEFORE),
    # and KAIZEN_ALLOW_INSECURE_CONTROL_PLANE for a plain-http control plane off this host.
    gateway_bundle_scope: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAIZEN_SCOPE", "KAIZEN_GATEWAY_BUNDLE_SCOPE", "gateway_bundle_scope"
        ),
    )
    bundle_min_revision: int | None = Field(default=None, ge=0)
    bundle_not_before: AwareDatetime | None = None
    allow_insecure_control_plane: bool = False
    # Public URL of this gateway (as callers reach it, through Envoy) for RFC 9728 metadata.
    gateway_public_url: str | None = None
    # Browser origins that may call /mcp (comma-separated `https://app.example.com`); a
    # request with any other Origin is a 403, one without Origin (a non-browser client) is
    # served. Empty: no browser origin may.
    gateway_mcp_allowed_origins: str = ""
    gateway_prices: str | None = None  # JSON {model: [usd per 1M input, per 1M output]}
    gateway_ingest_batch: int = 500
    gateway_ingest_buffer: int = 100_000
    log_level: str = "INFO"
    log_json: bool = True  # one JSON object per line (policy/runtime/logs.py); false: plain text
    # Provider keys (gateways/providers/secrets.py): `vault` reads them from Vault / OpenBao;
    # otherwise from KAIZEN_SECRET_<NAME> environment variables.
    secrets_backend: str = "database"
    gateway_organization_id: str | None = None  # the org whose keys it reads; else bundle scope
    vault_addr: str | None = Field(default=None, validation_alias=_vault("vault_addr"))
    vault_token: SecretStr | None = Field(default=None, validation_alias=_vault("vault_token"))
    vault_role_id: str | None = Field(default=None, validation_alias=_vault("vault_role_id"))
    vault_secret_id: SecretStr | None = Field(
        default=None, validation_alias=_vault("vault_secret_id")
    )
    vault_approle_mount: str = "approle"
    vault_kv_mount: str = "secret"
    vault_path_prefix: str = "kaizen"
    vault_timeout_seconds: float = 5.0
    vault_cache_seconds: float = 60.0

    # Outbound (policy/net/outbound.py): provider base URLs, HTTP tools and MCP servers come from
    # tenants' configs; loopback/private/link-local/metadata addresses are refused unless
    # these CIDRs cover them (e.g. "127.0.0.1" for a vLLM/Ollama on this host).
    outbound_allow_cidrs: str = ""

    @field_validator("outbound_allow_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        parse_cidrs(value)
        return value

    @cached_property
    def outbound_guard(self) -> OutboundGuard:
        return OutboundGuard.from_setting(self.outbound_allow_cidrs)

    @field_validator("gateway_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("KAIZEN_GATEWAY_TOKEN must be the gateway's credential (kgw_…)")
        return value

    @property
    def not_before_seconds(self) -> int | None:
        value: datetime | None = self.bundle_not_before
        return int(value.timestamp()) if value is not None else None

    @property
    def state_dir(self) -> Path:
        return self.home / "gateway"
