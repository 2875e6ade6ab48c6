"""Request-scoped dependencies: the caller, their tenant-bound transaction, their audit actor."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.session import Database
from control_plane.errors import Unauthenticated
from control_plane.observability import Metrics
from control_plane.services import gateways, sessions
from control_plane.services.audit import Actor
from control_plane.services.auth import Authenticator
from control_plane.services.billing.stripe_api import Billing
from control_plane.services.bundle_events import BundleEvents
from control_plane.services.gateways import GatewayIdentity
from control_plane.services.keys import KeyRing
from control_plane.services.kv import KeyValueStore
from control_plane.services.mfa import SecondFactor
from control_plane.services.oauth.flow import OAuthFlow
from control_plane.services.principal import Principal
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.replay_runner import ReplayRunner
from control_plane.services.secrets import SecretStore
from control_plane.settings import Settings
from policy.runtime.logs import organization_id_var, request_id_var


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def client_of(request: Request) -> sessions.Client:
    return sessions.Client(request.headers.get("user-agent"), client_ip(request))


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def get_second_factor(request: Request) -> SecondFactor:
    mfa: SecondFactor = request.app.state.mfa
    return mfa


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_kv(request: Request) -> KeyValueStore:
    kv: KeyValueStore = request.app.state.kv
    return kv


def get_key_ring(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


def get_secrets(request: Request) -> SecretStore:
    store: SecretStore = request.app.state.secrets
    return store


def get_bundle_events(request: Request) -> BundleEvents:
    events: BundleEvents = request.app.state.bundle_events
    return events


def get_rego(request: Request) -> RegoSandbox:
    rego: RegoSandbox = request.app.state.rego
    return rego


def get_replays(request: Request) -> ReplayRunner:
    runner: ReplayRunner = request.app.state.replays
    return runner


def get_billing(request: Request) -> Billing:
    billing: Billing = request.app.state.billing
    return billing


def get_oauth_flow(request: Request) -> OAuthFlow:
    flow: OAuthFlow = request.app.state.oauth
    return flow


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


# What the app's lifespan set up, as dependencies (routes never read `app.state` themselves).
SettingsDep = Annotated[Settings, Depends(get_settings)]
KeyValueDep = Annotated[KeyValueStore, Depends(get_kv)]
KeyRingDep = Annotated[KeyRing, Depends(get_key_ring)]
SecretsDep = Annotated[SecretStore, Depends(get_secrets)]
DatabaseDep = Annotated[Database, Depends(get_db)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]
SecondFactorDep = Annotated[SecondFactor, Depends(get_second_factor)]
BundleEventsDep = Annotated[BundleEvents, Depends(get_bundle_events)]
RegoDep = Annotated[RegoSandbox, Depends(get_rego)]
ReplaysDep = Annotated[ReplayRunner, Depends(get_replays)]
BillingDep = Annotated[Billing, Depends(get_billing)]
OAuthFlowDep = Annotated[OAuthFlow, Depends(get_oauth_flow)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_principal(
    request: Request, auth: AuthenticatorDep, kv: KeyValueDep, settings: SettingsDep
) -> Principal:
    """A bearer credential, else a browser session cookie (whose writes need CSRF)."""
    authorization = request.headers.get("authorization")
    session_cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if authorization is None and session_cookie:
        cookie_request = sessions.CookieRequest(
            request.method,
            session_cookie,
            request.cookies.get(sessions.CSRF_COOKIE),
            request.headers.get(sessions.CSRF_HEADER),
        )
        principal = await sessions.authenticate_cookie(auth, kv, cookie_request)
    else:
        principal = await auth.authenticate(authorization)
    if principal.session_id:
        await sessions.touch(kv, settings, principal.session_id)
    organization_id_var.set(str(principal.organization_id))
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True)
class Tenant:
    """The caller and a way to open a transaction that can only see their organisation."""

    principal: Principal
    actor: Actor
    db: Database

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self.db.session(self.principal.organization_id)

    @property
    def organization_id(self) -> uuid.UUID:
        return self.principal.organization_id


def requires(collection: str, action: str) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    """A dependency that authenticates, checks the role table, and yields the `Tenant`."""

    async def dependency(request: Request, principal: PrincipalDep, db: DatabaseDep) -> Tenant:
        principal.require(collection, action)
        actor = Actor.of(principal, client_ip(request), request_id_var.get())
        return Tenant(principal, actor, db)

    dependency.__name__ = f"requires_{collection}_{action}"
    return dependency


Cursor = Annotated[str | None, Query(max_length=200, description="From the previous page.")]
Limit = Annotated[int, Query(ge=1, le=500)]


def bearer(request: Request) -> str:
    scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


async def get_gateway(request: Request, db: DatabaseDep) -> GatewayIdentity:
    """The gateway (or its sidecar) presenting its `kgw_…` credential."""
    credential = bearer(request)
    if not credential:
        raise Unauthenticated("send Authorization: Bearer <gateway credential>")
    identity = await gateways.authenticate(db, credential)
    organization_id_var.set(str(identity.organization_id))
    return identity


GatewayDep = Annotated[GatewayIdentity, Depends(get_gateway)]
