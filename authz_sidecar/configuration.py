"""What the sidecar's settings ask for, checked before anything starts: the policy source
(a static bundle verified at start) and the budget, reservation and grant-reuse backends
(Redis when `KAIZEN_REDIS_URL` is set, else in process). A refusal is a
`ConfigurationError` naming the setting to change; the process exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from authz_sidecar.budgets import (
    InMemoryBudgetLedger,
    InMemoryReservationBook,
    RedisBudgetLedger,
    RedisReservationBook,
    ReservationBook,
)
from authz_sidecar.grants import (
    ControlPlaneReplayGuard,
    NoSharedReplayGuard,
    RedisReplayGuard,
    ReplayGuard,
)
from authz_sidecar.redis_batch import NO_RETRY
from authz_sidecar.settings import SidecarSettings
from policy.bundles.bundle import claimed_scope, load_bundle
from policy.bundles.bundle_sync import InsecureControlPlane, check_control_plane_url
from policy.engine.budgets import BudgetLedger
from policy.errors import BundleVerificationError
from policy.runtime import tracing


class ConfigurationError(Exception):
    """The sidecar cannot start as configured; the message says what to set."""


def load_static_bundle(
    bundle_path: Path,
    jwks_path: Path,
    scope: str | None,
    *,
    min_revision: int | None = None,
    not_before: int | None = None,
) -> Any:
    """Verify a bundle file with a JWKS file (static mode)."""
    try:
        data = bundle_path.read_bytes()
        jwks = json.loads(jwks_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read static bundle or JWKS: {exc}") from None
    except ValueError as exc:
        raise ConfigurationError(f"KAIZEN_SIDECAR_JWKS {jwks_path} is not JSON: {exc}") from None
    scope = scope or claimed_scope(data)
    if scope is None:
        raise ConfigurationError("cannot tell the bundle's scope: set KAIZEN_SCOPE")
    try:
        return load_bundle(
            data, jwks, scope=scope, min_revision=min_revision, not_before=not_before
        )
    except BundleVerificationError as exc:
        raise ConfigurationError(f"static bundle {bundle_path} refused: {exc}") from None


def check_settings(settings: SidecarSettings) -> None:
    """Refusals that must stop the start, with the setting to change."""
    try:
        tracing.requested()
    except tracing.TracingConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    if settings.platform_token:
        if settings.gateway_token or settings.sidecar_bundle is not None:
            raise ConfigurationError(
                "KAIZEN_PLATFORM_TOKEN (a shared platform gateway) goes alone: unset "
                "KAIZEN_GATEWAY_TOKEN and KAIZEN_SIDECAR_BUNDLE"
            )
        if not settings.redis_url:
            raise ConfigurationError(
                "a shared platform gateway needs KAIZEN_REDIS_URL: each organisation's "
                "budgets and single-use grants must hold across its workers and pods"
            )
    if settings.credential:
        try:
            check_control_plane_url(
                settings.control_plane_url, allow_insecure=settings.allow_insecure_control_plane
            )
        except InsecureControlPlane as exc:
            raise ConfigurationError(str(exc)) from None


def budget_backends(
    settings: SidecarSettings,
) -> tuple[BudgetLedger, ReservationBook, ReplayGuard, aioredis.Redis | None]:
    ttl = settings.sidecar_reservation_ttl_seconds
    if not settings.redis_url:
        # One process's memory is not single use across a fleet or a restart: grants are
        # redeemed at the control plane, or refused when there is none to ask.
        token = settings.gateway_token
        guard: ReplayGuard = (
            ControlPlaneReplayGuard(settings.control_plane_url, token)
            if token
            else NoSharedReplayGuard()
        )
        return InMemoryBudgetLedger(), InMemoryReservationBook(ttl), guard, None
    ledger = RedisBudgetLedger.from_url(settings.redis_url, settings.redis_prefix)
    # Blocking pool: a burst waits for a free connection instead of failing. No retries:
    # a resent reservation, grant use or settle could count twice (redis_batch.NO_RETRY).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=64,
        timeout=1.0,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=NO_RETRY,
    )
    client = aioredis.Redis(connection_pool=pool)
    book = RedisReservationBook(client, settings.redis_prefix, ttl)
    return ledger, book, RedisReplayGuard(client, settings.redis_prefix), client


__all__ = ["ConfigurationError", "budget_backends", "check_settings", "load_static_bundle"]
