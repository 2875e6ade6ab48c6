"""Bundle revisions, and the OPA-compatible bundle endpoint sidecars long-poll."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from control_plane.api.deps import (
    AuthenticatorDep,
    BundleEventsDep,
    Cursor,
    DatabaseDep,
    KeyRingDep,
    KeyValueDep,
    Limit,
    SettingsDep,
    Tenant,
    bearer,
    get_gateway,
    get_principal,
    requires,
)
from control_plane.api.policies import revision_out
from control_plane.errors import NotFound
from control_plane.schemas.base import Page
from control_plane.schemas.policies import BundleRevision as RevisionOut
from control_plane.services import bundle_events, gateways, platform_gateways, policies

router = APIRouter(prefix="/api/v1/bundles", tags=["bundles"])

Read = Annotated[Tenant, Depends(requires("bundles", "read"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}}
MAX_WAIT_SECONDS = 60
_WAIT = re.compile(r"(?:^|[;,\s])wait=(\d{1,4})(?:$|[;,\s])")
# nginx's status for "the client closed the connection before the answer": logged and
# counted, never read by anyone.
CLIENT_CLOSED_REQUEST = 499


@router.get("", responses=ERRORS)
async def list_bundles(
    tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[RevisionOut]:
    async with tenant.session() as session:
        rows, next_cursor = await policies.list_revisions(session, cursor, limit)
    return Page(items=[revision_out(r) for r in rows], next_cursor=next_cursor)


async def _reader_organization(
    request: Request,
    scope: str,
    db: DatabaseDep,
    auth: AuthenticatorDep,
    kv: KeyValueDep,
    settings: SettingsDep,
) -> uuid.UUID:
    """A gateway credential, a platform gateway's credential for a scope it serves (ADR
    0012), or a user/API key allowed to read bundles."""
    if platform_gateways.is_platform_credential(bearer(request)):
        platform = await platform_gateways.authenticate(db, bearer(request))
        return await platform_gateways.served_organization(db, platform, scope)
    if bearer(request).startswith(gateways.CREDENTIAL_PREFIX):
        identity = await get_gateway(request, db)
        return identity.organization_id
    principal = await get_principal(request, auth, kv, settings)
    principal.require("bundles", "read")
    return principal.organization_id


def _etag(revision: int) -> str:
    return f'"{revision}"'


def _tags(if_none_match: str | None) -> set[str]:
    if not if_none_match:
        return set()
    return {t.strip().removeprefix("W/") for t in if_none_match.split(",") if t.strip()}


def _wait_seconds(prefer: str | None) -> int:
    match = _WAIT.search(f" {prefer or ''} ")
    return min(int(match.group(1)), MAX_WAIT_SECONDS) if match else 0


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (after its body, ASGI's next message is the
    disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _client_left_during(request: Request, published: asyncio.Future[int], wait: int) -> bool:
    """Waits up to `wait` s for `published`; True, at once, if the client leaves meanwhile.

    A stopped sidecar's long-poll otherwise runs to its end (up to a minute), holding a
    restart of the control plane for its whole graceful-shutdown period."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((published, gone), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    return gone.done() and not gone.cancelled() and gone.exception() is None


@router.get(
    "/{scope}/bundle.tar.gz",
    responses={
        **ERRORS,
        200: {"content": {"application/gzip": {}}, "description": "The signed bundle."},
        304: {"description": "Not modified within the requested wait."},
    },
)
async def download(
    scope: str,
    request: Request,
    organization_id: Annotated[uuid.UUID, Depends(_reader_organization)],
    db: DatabaseDep,
    events: BundleEventsDep,
    if_none_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """The current signed bundle of `scope` (an organisation id: your own).

    With `If-None-Match` naming the current revision's ETag the answer is `304`; with
    `Prefer: wait=N` (N ≤ 60) that answer is held until a newer revision is published or
    N seconds pass, so a sidecar learns of a publish at once. `404` while nothing is
    published (after the wait, if one was asked for).
    """
    if scope != str(organization_id):
        raise NotFound("no such bundle scope")
    # The dependencies hold no session: each read below is its own short transaction, so
    # a long-poll ties up no connection while it waits.
    known = _tags(if_none_match)
    wait = _wait_seconds(prefer)
    with events.waiter(scope) as published:
        revision = await bundle_events.newest_revision(db, organization_id)
        if wait and (revision is None or _etag(revision) in known):
            if await _client_left_during(request, published, wait):
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            revision = await bundle_events.newest_revision(db, organization_id)
    if revision is None:
        raise NotFound("nothing is published for this scope yet")
    headers = {
        "ETag": _etag(revision),
        "X-Kaizen-Bundle-Revision": str(revision),
        "Cache-Control": "no-cache",
    }
    if _etag(revision) in known:
        return Response(status_code=304, headers=headers)
    return Response(
        await events.bundles.get(
            organization_id,
            revision,
            lambda: bundle_events.signed_bundle(db, organization_id, revision),
        ),
        media_type="application/gzip",
        headers=headers,
    )


@router.get("/{scope}/jwks.json", responses={404: {}})
async def scope_jwks(scope: str, keys: KeyRingDep) -> dict[str, Any]:
    """The public keys that sign `scope`'s bundles, and no other organisation's.

    Public, like `/.well-known/jwks.json` (they are public keys; `kaizen-studio bundle
    verify --jwks URL` in a customer's CI reads them without a credential). A sidecar or
    gateway of this scope pins them (`KAIZEN_SIDECAR_JWKS`, `KAIZEN_GATEWAY_JWKS`) or
    fetches them at first contact. Access-token keys are at `/.well-known/jwks.json`.
    """
    try:
        organization_id = uuid.UUID(scope)
    except ValueError:
        raise NotFound("no such bundle scope") from None
    return await keys.organization_jwks(organization_id)
