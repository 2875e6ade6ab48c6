"""Runtime configuration, read from `KAIZEN_*` environment variables (CONTRACTS.md)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from policy.net.outbound import OutboundGuard, parse_cidrs


def default_home() -> Path:
    return Path(os.environ.get("KAIZEN_HOME") or Path.home() / ".kaizen-studio")


def _env(field: str) -> AliasChoices:
    """`KAIZEN_<FIELD>`, or Vault's own variable (`VAULT_ADDR`, `VAULT_TOKEN`, …)."""
    return AliasChoices(field, f"KAIZEN_{field.upper()}", field.upper())


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
    # When set, GET /metrics needs `Authorization: Bearer <it>` (the labels name tenants).
    metrics_token: SecretStr | None = None
    login_attempts_per_window: int = 10
    login_window_seconds: int = 300
    log_json: bool = True
    log_level: str = "INFO"
    # The plan a new organisation starts on (M12; `kaizen-studio org set-plan` changes it).
    default_plan: Literal["free", "pro", "enterprise"] = "free"

    # -- secrets (M7): see control_plane/services/secrets.py ----------------------------------
    # The master key being rotated away from (base64 of 32 bytes, or a file holding that):
    # still opens data keys it wrapped, so replicas keep reading during a rotation.
    master_key_previous: str | None = None
    master_key_previous_file: Path | None = None
    vault_addr: str | None = Field(default=None, validation_alias=_env("vault_addr"))
    vault_token: SecretStr | None = Field(default=None, validation_alias=_env("vault_token"))
    vault_role_id: str | None = Field(default=None, validation_alias=_env("vault_role_id"))
    vault_secret_id: SecretStr | None = Field(
        default=None, validation_alias=_env("vault_secret_id")
    )
    vault_approle_mount: str = "approle"
    vault_kv_mount: str = "secret"  # a KV v2 engine
    vault_path_prefix: str = "kaizen"  # secrets live at <prefix>/<organization id>/<name>
    # When set, the database backend's data keys are wrapped by this Vault transit key.
    vault_transit_key: str | None = None
    vault_transit_mount: str = "transit"
    vault_timeout_seconds: float = 5.0

    # -- approvals and notifications (M5): see control_plane/services/notifications.py -------
    approval_ttl_seconds: int = Field(default=3600, ge=1)  # a request expires unanswered
    approval_grant_ttl_seconds: int = Field(default=900, ge=1)  # a minted grant's lifetime
    smtp_host: str | None = None  # email is off while unset
    smtp_port: int = 25
    smtp_from: str = "kaizen-studio@localhost"
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0)  # doubles per attempt
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Also send the pre-Standard-Webhooks `X-Kaizen-Signature` (webhook_signing). Kept on
    # for one release so receivers can move to `webhook-signature`; then off, then removed.
    webhook_legacy_signature: bool = True
    notification_poll_seconds: float = Field(default=1.0, gt=0)
    denial_alert_threshold: int = Field(default=10, ge=1)  # security.repeated_denials after N
    denial_alert_window_seconds: int = Field(default=300, ge=1)

    # -- billing with Stripe (M12): see control_plane/services/billing/ ----------------------
    # Off while the secret key, the webhook secret or every price is unset (the embedded
    # default): plans are then set by the operator (`kaizen-studio org set-plan`) only.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None  # whsec_…, verifies Stripe-Signature
    stripe_api_base: str = "https://api.stripe.com"  # tests point it at a local stand-in
    # The recurring Price of each plan sold through Checkout (unset: not for sale).
    stripe_price_pro: str | None = None
    stripe_price_enterprise: str | None = None
    # A metered Price on the Meter below, added to each subscription: executions over the
    # plan are reported to the meter (`stripe_meter_event_name`; unset: nothing reported).
    stripe_price_executions: str | None = None
    stripe_meter_event_name: str | None = None
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # A downgrade that leaves the organisation over a limit keeps the previous limits this
    # long, then enforces the lower plan's (nothing is deleted).
    billing_grace_days: int = Field(default=14, ge=0, le=90)
    billing_poll_seconds: float = Field(default=60.0, gt=0)  # meter events, grace endings

    # -- MFA and browser sessions (M7): see control_plane/services/{mfa,sessions}.py ---------
    mfa_attempts_per_window: int = Field(default=5, ge=1)  # wrong second-factor codes
    mfa_window_seconds: int = Field(default=300, ge=1)
    mfa_enrolment_ttl_seconds: int = Field(default=600, ge=60)  # the enrolment-only token
    # Off only for plain-http development on 127.0.0.1: browsers drop Secure cookies there.
    session_cookie_secure: bool = True
    browser_session_ttl_seconds: int = Field(default=12 * 3600, ge=60)

    # -- verified email domains (M8): see control_plane/services/domains.py -----------------
    # The DNS server that answers TXT verification lookups, `host` or `host:port`; unset:
    # the system resolver (/etc/resolv.conf).
    dns_nameserver: str | None = None
    dns_timeout_seconds: float = Field(default=5.0, gt=0)
    # -- outbound requests (M8): see policy/net/outbound.py ---------------------------------------
    # CIDRs the platform may reach although they are loopback/private/link-local, e.g. an
    # in-cluster webhook receiver or IdP ("10.20.0.0/16,127.0.0.1"). Empty: public only.
    outbound_allow_cidrs: str = ""

    @field_validator("outbound_allow_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        parse_cidrs(value)  # a typo fails the start, not the first webhook
        return value

    @cached_property
    def outbound_guard(self) -> OutboundGuard:
        """The guard every fetch of a tenant-supplied URL goes through."""
        return OutboundGuard.from_setting(self.outbound_allow_cidrs)

    # -- tenant Rego evaluation (M8): see control_plane/services/rego_sandbox.py -----------
    # Simulate, tests, validate, publish and replay compile and evaluate tenant Rego in
    # worker processes; a task past the time or memory limit is stopped (422) and its
    # worker replaced.
    rego_workers: int = Field(default=2, ge=1, le=64)
    rego_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    rego_memory_mb: int = Field(default=512, ge=64)  # beyond a worker's baseline
    # How many workers one organisation may use at once, and how many of its tasks may
    # wait for them (more is a 429): one tenant cannot occupy the whole pool.
    rego_workers_per_organization: int = Field(default=1, ge=1)
    rego_queue_per_organization: int = Field(default=4, ge=0)
    # Per-organisation fixed-window rate limits (429 with Retry-After), per route kind.
    rego_rate_window_seconds: int = Field(default=60, ge=1)
    rego_simulations_per_window: int = Field(default=120, ge=1)  # simulate, validate
    rego_test_runs_per_window: int = Field(default=60, ge=1)  # policy tests
    rego_publishes_per_window: int = Field(default=20, ge=1)  # publish, rollback
    rego_replays_per_window: int = Field(default=10, ge=1)  # replay jobs started

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home / 'kaizen.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
