"""Sidecar configuration from `KAIZEN_*` environment variables (CONTRACTS.md,
docs/runtime-protocols.md)."""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, AwareDatetime, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from policy.runtime.cpus import available_cpus


def _default_home() -> Path:
    return Path(os.environ.get("KAIZEN_HOME") or Path.home() / ".kaizen-studio")


class SidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAIZEN_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    sidecar_host: str = "127.0.0.1"
    sidecar_grpc_port: int = 9191
    sidecar_http_port: int = 9192
    # None: one worker without Redis (in-process budgets and grants), else one per CPU this
    # process may use (`available_cpus`: affinity, capped by the cgroup CPU quota).
    sidecar_workers: int | None = None
    control_plane_url: str = "http://127.0.0.1:8000"
    gateway_token: str | None = Field(default=None, repr=False)
    # A shared platform gateway's credential (`kgp_…`, ADR 0012) instead of a gateway's:
    # one engine per organisation the control plane placed on it (authz_sidecar/tenancy.py).
    platform_token: str | None = Field(default=None, repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    redis_prefix: str = "kaizen:"
    issuer: str = "kaizen-studio"
    audience: str = "kaizen-studio-api"
    # Static mode: a bundle file and the JWKS that verifies it; no control plane needed.
    sidecar_bundle: Path | None = None
    sidecar_jwks: Path | None = None
    # Bundle trust. The scope (the organisation id) this sidecar is bound to: KAIZEN_SCOPE
    # (or KAIZEN_SIDECAR_SCOPE); unset, sync mode pins the scope of its first contact (kept
    # with the last-known-good bundle) and static mode takes the one the signed manifest
    # names. The floor every bundle must clear, also on a fresh sidecar with an empty disk:
    # KAIZEN_BUNDLE_MIN_REVISION, KAIZEN_BUNDLE_NOT_BEFORE (RFC 3339 or Unix seconds, `iat`).
    # A plain-http control plane off this host needs KAIZEN_ALLOW_INSECURE_CONTROL_PLANE=true.
    sidecar_scope: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAIZEN_SCOPE", "KAIZEN_SIDECAR_SCOPE", "sidecar_scope"),
    )
    bundle_min_revision: int | None = Field(default=None, ge=0)
    bundle_not_before: AwareDatetime | None = None
    allow_insecure_control_plane: bool = False
    # What the gateway beside this sidecar serves; goes into resource.workspace and context.
    sidecar_workspace: str | None = None
    sidecar_environment: str | None = None
    sidecar_gateway: str | None = None
    # OAuth for MCP (M11): the control plane's public URL its issuers live under (default:
    # control_plane_url). This gateway's canonical MCP URL (the audience its tokens carry)
    # comes from the signed bundle, under this credential's binding (engine_holder.py).
    sidecar_oauth_issuer: str | None = None
    # Only when the proxy overwrites it: otherwise a caller could pick its own workspace.
    sidecar_trust_workspace_header: bool = False
    # Dotted decision-input paths replaced by "***" in decision logs (comma-separated).
    sidecar_mask: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Peers whose X-Real-IP / X-Original-URI / X-Original-Method `/authz` believes: the
    # proxy (nginx) beside the sidecar. Anyone else is judged by its own address and must
    # carry the gateway credential to name an original request (comma-separated CIDRs).
    sidecar_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"]
    )
    sidecar_max_body_bytes: int = 1024 * 1024
    # HTTP server (/ext_authz, /authz): a request must arrive whole within this many seconds
    # of its first byte (else 408 and the connection closes: slow clients hold no worker);
    # an idle keep-alive connection closes after the idle timeout (keep it above the
    # proxy's own upstream idle timeout, 60 s in deploy/envoy/envoy.yaml).
    sidecar_http_request_timeout_seconds: float = Field(default=10.0, gt=0)
    sidecar_http_idle_timeout_seconds: float = Field(default=120.0, gt=0)
    sidecar_reservation_ttl_seconds: int = 3600
    # Budget leases (authz_sidecar/budget_leases.py, ADR 0015): a worker leases up to this
    # many calls' worth of a budget at a time and serves them without a Redis round trip;
    # 0: every reservation waits for Redis.
    sidecar_budget_lease_calls: int = Field(default=64, ge=0)
    # AuthZEN (authz_sidecar/authzen_http.py): the URL callers reach this sidecar's HTTP port
    # at, published as `policy_decision_point` in /.well-known/authzen-configuration. Never
    # taken from a request's Host header (the identifier guards against PDP mix-up).
    sidecar_authzen_base_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = True  # one JSON object per line (policy/runtime/logs.py); false: plain text

    @field_validator("sidecar_mask", mode="before")
    @classmethod
    def _split_mask(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sidecar_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sidecar_trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"KAIZEN_SIDECAR_TRUSTED_PROXIES: {cidr!r} is not a CIDR"
                ) from None
        return value

    @field_validator("sidecar_authzen_base_url")
    @classmethod
    def _valid_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = urlsplit(value.strip())
        loopback = parsed.hostname in ("127.0.0.1", "::1", "localhost")
        if (
            parsed.scheme not in ("https", "http")
            or (parsed.scheme == "http" and not loopback)
            or not parsed.hostname
            or parsed.query
            or parsed.fragment
        ):
            raise ValueError(
                "KAIZEN_SIDECAR_AUTHZEN_BASE_URL must be an https URL without query or "
                "fragment (http only on loopback)"
            )
        return value.strip().rstrip("/")

    @property
    def not_before_seconds(self) -> int | None:
        value: datetime | None = self.bundle_not_before
        return int(value.timestamp()) if value is not None else None

    @property
    def credential(self) -> str | None:
        """What this sidecar presents to the control plane and the gateway beside it."""
        return self.platform_token or self.gateway_token

    @property
    def state_dir(self) -> Path:
        return self.home / "sidecar"

    @property
    def workers(self) -> int:
        if self.sidecar_workers is not None:
            return max(1, self.sidecar_workers)
        # One per CPU this process may use (a container's limit, not the node's cores).
        return available_cpus() if self.redis_url else 1
