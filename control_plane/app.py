"""The FastAPI application: wiring, lifespan and the one error table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane.api import (
    api_keys,
    approvals,
    audit,
    auth,
    billing,
    bundles,
    connectors,
    decisions,
    deployments,
    domains,
    gateways,
    me,
    mfa,
    oauth,
    oauth_clients,
    plans,
    platform,
    policies,
    replays,
    secrets,
    sessions,
    sso,
    system,
    teams,
    usage,
    users,
    webhooks,
    workloads,
    workspaces,
)
from control_plane.api.operation_ids import operation_id
from control_plane.db.migrate import upgrade
from control_plane.db.session import Database
from control_plane.errors import Conflict, KaizenError, Unavailable, invalid_fields
from control_plane.observability import Metrics, RequestMiddleware
from control_plane.services import policies as policy_service
from control_plane.services.auth import Authenticator
from control_plane.services.billing.metering import BillingWorker
from control_plane.services.billing.stripe_api import Billing, StripeConfig
from control_plane.services.bundle_events import BundleEvents
from control_plane.services.crypto import load_master_key
from control_plane.services.keys import KeyRing
from control_plane.services.kv import open_store
from control_plane.services.mfa import SecondFactor
from control_plane.services.notifications import configure_notifications
from control_plane.services.notifier import Notifier
from control_plane.services.oauth.flow import OAuthFlow
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.replay_runner import ReplayRunner
from control_plane.services.revocations import RevocationPublisher
from control_plane.services.secrets import open_secret_store
from control_plane.settings import Settings
from control_plane.ui_assets import mount_ui
from policy.errors import PolicyError, PolicyValidationError, kind_for_http, kind_of
from policy.runtime import tracing
from policy.runtime.tracing_asgi import TracingMiddleware

log = logging.getLogger(__name__)


_INTERNAL = "internal error; the request id identifies it in our logs"


def _error(
    status: int, code: str, message: str, details: Any = None, headers: Any = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KaizenError)
    async def kaizen_error(_request: Request, error: KaizenError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        invalid = invalid_fields(error.errors())
        return JSONResponse(invalid.body(), status_code=invalid.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = kind_for_http(error.status_code).code
        return _error(error.status_code, code, str(error.detail), headers=error.headers)

    @app.exception_handler(PolicyError)
    async def policy_error(_request: Request, error: PolicyError) -> JSONResponse:
        # Services turn these into Invalid with context; one that gets here still answers
        # its row of the table, with the line and column when the source did not compile.
        kind = kind_of(error)
        if kind.http >= 500:
            log.exception("unhandled policy error", exc_info=error)
            return _error(
                500, "internal", "internal error; the request id identifies it in our logs"
            )
        details = error.details if isinstance(error, PolicyValidationError) else None
        return _error(kind.http, kind.code, str(error), details)

    @app.exception_handler(IntegrityError)
    async def integrity_error(_request: Request, _error: IntegrityError) -> JSONResponse:
        # A race lost to a concurrent write of the same unique value.
        conflict = Conflict("conflicts with an existing record; retry")
        return JSONResponse(conflict.body(), status_code=409)

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, error: DBAPIError) -> JSONResponse:
        # PostgreSQL ends one of two conflicting transactions (deadlock, serialization
        # failure, a lock it could not take) and expects the client to try again: its
        # transaction rolled back, so nothing was written. Anything else is a 500.
        if _transient(error):
            log.warning("transaction ended by the database (%s); answered 503", _sqlstate(error))
            busy = Unavailable(
                "the database ended this request's transaction in favour of a concurrent one "
                "(nothing was written); retry",
                headers={"Retry-After": "1"},
            )
            return JSONResponse(busy.body(), status_code=503, headers=busy.headers)
        log.exception("unhandled database error", exc_info=error)
        return _error(500, "internal", _INTERNAL)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=error)
        return _error(500, "internal", _INTERNAL)


# SQLSTATEs that end a transaction for a concurrent one, to be retried by the client:
# serialization_failure, deadlock_detected, lock_not_available.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def _sqlstate(error: DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _transient(error: DBAPIError) -> bool:
    if _sqlstate(error) in _TRANSIENT_SQLSTATES:
        return True
    # SQLite: another writer holds the database past the busy timeout.
    return "database is locked" in str(error.orig)


def create_app(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.is_sqlite:
            settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if migrate:
            await upgrade(db)
        keys = KeyRing(
            db, load_master_key(settings), max_token_ttl=settings.access_token_ttl_seconds
        )
        await keys.start()
        # Bundles from before per-organisation keys: sign them with the organisation's key.
        await policy_service.resign_with_organization_keys(db, keys, issuer=settings.issuer)
        kv = open_store(settings.redis_url, prefix=settings.redis_prefix)
        app.state.db, app.state.keys, app.state.kv = db, keys, kv
        app.state.metrics.watch_pool(db.engine)
        app.state.auth = Authenticator(settings, db, keys, kv)
        app.state.mfa = SecondFactor(settings, db, kv, load_master_key(settings))
        app.state.secrets = open_secret_store(settings, db)
        app.state.bundle_events = BundleEvents(settings.redis_url, prefix=settings.redis_prefix)
        await app.state.bundle_events.start()
        app.state.revocations = RevocationPublisher(
            db,
            keys,
            issuer=settings.issuer,
            access_token_ttl=settings.access_token_ttl_seconds,
            notify=app.state.bundle_events.notify,
        )
        app.state.auth.on_revoke = app.state.revocations.note
        app.state.oauth = OAuthFlow(settings, db, kv, keys, app.state.auth)
        await app.state.revocations.start()
        # Tenant Rego runs only in these worker processes (M8); they stop with the app.
        app.state.rego = RegoSandbox(
            workers=settings.rego_workers,
            timeout_seconds=settings.rego_timeout_seconds,
            memory_mb=settings.rego_memory_mb,
            per_organization=settings.rego_workers_per_organization,
            queue_per_organization=settings.rego_queue_per_organization,
        )
        await app.state.rego.start()
        app.state.replays = ReplayRunner(db, app.state.rego)
        await app.state.replays.start()
        configure_notifications(db, settings)
        app.state.notifier = Notifier(db, settings, lambda: app.state.secrets)
        await app.state.notifier.start()
        app.state.billing = Billing(StripeConfig.of(settings))
        app.state.billing_worker = BillingWorker(
            db,
            app.state.billing,
            keys,
            issuer=settings.issuer,
            poll_seconds=settings.billing_poll_seconds,
            notify=app.state.bundle_events.notify,
        )
        await app.state.billing_worker.start()
        try:
            yield
        finally:
            await app.state.billing_worker.stop()
            await app.state.billing.close()
            await app.state.notifier.stop()
            await app.state.replays.close()
            await app.state.revocations.close()
            await app.state.rego.close()
            await app.state.bundle_events.close()
            await app.state.secrets.close()
            await kv.close()
            await db.dispose()
            tracing.flush()

    app = FastAPI(
        title="Kaizen Studio control plane",
        version="0.1.0",
        description="Tenants, identities, policies and signed bundles for AI-agent authorization.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    if tracing.ENABLED:  # inside RequestMiddleware: it resets the log context after the span
        app.add_middleware(TracingMiddleware)
    app.add_middleware(
        RequestMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        max_ingest_bytes=settings.max_ingest_bytes,
        metrics_token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
    )
    install_error_handlers(app)
    routers = (system, auth, me, mfa, sessions, users, teams, workspaces, api_keys, audit)
    features = (gateways, sso, domains, approvals, webhooks, usage, plans, billing, oauth)
    late = (oauth_clients, replays, policies, bundles, decisions, secrets, connectors, platform)
    # replays before policies: its /api/v1/policies/settings must win over /{policy_id}
    for module in (*routers, *features, *late):
        app.include_router(module.router)
    for router in (workloads.agents, workloads.pipelines, deployments.router):
        app.include_router(router)
    mount_ui(app, settings)
    return app
