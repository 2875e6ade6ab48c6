from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from control_plane import observability
from control_plane.api.deps import (
    Cursor,
    Limit,
    RegoDep,
    Tenant,
    get_key_ring,
    get_kv,
    get_settings,
    requires,
)
from control_plane.api.resign import announce, resign
from control_plane.db.models import BundleRevision
from control_plane.schemas import policies as schemas
from control_plane.schemas.base import Page
from control_plane.services import policies, ratelimit, release
from control_plane.services.keys import KeyRing
from control_plane.services.rego_sandbox import RegoSandbox

router = APIRouter(prefix="/api/v1/policies", tags=["policies"])

Read = Annotated[Tenant, Depends(requires("policies", "read"))]
Simulate = Annotated[Tenant, Depends(requires("policies", "simulate"))]
Create = Annotated[Tenant, Depends(requires("policies", "create"))]
Delete = Annotated[Tenant, Depends(requires("policies", "delete"))]
Publish = Annotated[Tenant, Depends(requires("policies", "publish"))]
ERRORS: dict[int | str, dict[str, object]] = {
    401: {},
    403: {},
    404: {},
    409: {},
    422: {},
    429: {},
}
MAX_VERSION = 2**31 - 1  # versions are 32-bit integers in the database
# A client's key for a publish or rollback it may send again (RFC draft "The
# Idempotency-Key HTTP Header Field"): a repeat answers the revision the first one stored.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Send the request again safely: a repeat within 24 h answers the "
        "revision the first attempt stored instead of releasing another.",
    ),
]


def _keys(request: Request) -> KeyRing:
    keys: KeyRing = get_key_ring(request)
    return keys


# Route kind -> (its setting, what a refusal says was refused).
_RATES = {
    "simulate": ("rego_simulations_per_window", "policy simulations and validations"),
    "test": ("rego_test_runs_per_window", "policy test runs"),
    "publish": ("rego_publishes_per_window", "policy publishes and rollbacks"),
    "replay": ("rego_replays_per_window", "policy replays"),
}


async def limit_rate(request: Request, tenant: Tenant, kind: str) -> None:
    """Count one Rego-evaluating request of the caller's organisation; past its limit, 429
    (before anything is read or written). Each organisation has its own window."""
    settings = get_settings(request)
    setting, what = _RATES[kind]
    await ratelimit.hit(
        get_kv(request),
        f"rego:{kind}:{tenant.organization_id}",
        limit=getattr(settings, setting),
        window=settings.rego_rate_window_seconds,
        what=f"{what} for this organisation",
    )


def _release(request: Request, tenant: Tenant, rego: RegoSandbox) -> release.Release:
    return release.Release(
        tenant.organization_id,
        tenant.actor,
        tenant.session,
        _keys(request),
        rego,
        _issuer(request),
    )


def _issuer(request: Request) -> str:
    issuer: str = get_settings(request).issuer
    return issuer


async def refresh_bundle(request: Request, tenant: Tenant, why: str) -> None:
    """Re-sign the published policies after a credential change, and tell the sidecars."""
    async with tenant.session() as session:
        row = await resign(request, tenant, session, why)
    await announce(request, row)


def policy_out(item: policies.PolicySource) -> schemas.Policy:
    policy = item.policy
    return schemas.Policy(
        id=policy.id,
        name=policy.name,
        kind=policy.kind,
        latest_version=policy.latest_version,
        published_version=policy.published_version,
        status=policies.status(policy),
        created_at=policy.created_at,
        updated_at=policy.updated_at,
        source=item.source,
    )


def revision_out(row: BundleRevision) -> schemas.BundleRevision:
    return schemas.BundleRevision(
        revision=row.revision,
        reason=row.reason,
        message=row.message,
        key_id=row.key_id,
        etag=f'"{row.revision}"',
        sha256=row.sha256,
        size=row.size,
        policies=row.policies,
        created_at=row.created_at,
        created_by=row.created_by,
        scope=str(row.organization_id),
    )


@router.get("", responses=ERRORS)
async def list_policies(
    tenant: Read,
    cursor: Cursor = None,
    limit: Limit = 100,
    include_deleted: Annotated[bool, Query()] = False,
) -> Page[schemas.Policy]:
    async with tenant.session() as session:
        rows, next_cursor = await policies.list_policies(
            session, cursor, limit, include_deleted=include_deleted
        )
        items = [policy_out(p) for p in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, responses=ERRORS)
async def apply_policies(
    body: schemas.PolicySource, tenant: Create, rego: RegoDep
) -> schemas.PolicyApplied:
    """Create or update drafts, one per document, by `metadata.name`; all or nothing.

    A malformed document is a 422 whose `details` name the document, field, line and
    column. Drafts take effect only when published.
    """
    # Parsed and checked in the sandbox between short transactions (no lock held while
    # tenant Rego compiles); the write refuses if the drafts changed meanwhile.
    documents = await policies.parse(rego, tenant.organization_id, body.source)
    async with tenant.session() as session:
        drafts = await policies.applied_drafts(session, documents)
    await policies.check(rego, tenant.organization_id, drafts)
    async with tenant.session() as session:
        applied = await policies.apply(
            session, tenant.organization_id, tenant.actor, documents, checked=drafts
        )
        items = [policy_out(p) for p in applied.policies]
    return schemas.PolicyApplied(
        items=items, created=applied.created, updated=applied.updated, unchanged=applied.unchanged
    )


@router.post("/validate", responses=ERRORS)
async def validate_policies(
    body: schemas.PolicySource, tenant: Read, request: Request, rego: RegoDep
) -> schemas.ValidationReport:
    """Check a source without saving it (for editors): every problem with its location."""
    await limit_rate(request, tenant, "simulate")
    details = await policies.validate(rego, tenant.organization_id, body.source)
    return schemas.ValidationReport(valid=not details, details=details)


@router.post("/simulate", responses=ERRORS)
async def simulate(
    body: schemas.SimulateRequest, tenant: Simulate, request: Request, rego: RegoDep
) -> dict[str, Any]:
    """The decision the drafts (`draft: true`) or the published set would make, explained.

    Every stage is evaluated (`explain`), nothing is reserved against budgets, and the
    principal's organisation defaults to yours.
    """
    await limit_rate(request, tenant, "simulate")
    async with tenant.session() as session:
        prepared = await policies.prepare_selected(
            session, tenant.organization_id, _keys(request), draft=body.draft
        )
    # Evaluated after the transaction ended: no lock or connection is held meanwhile.
    return await policies.simulate(rego, tenant.organization_id, prepared, body.input)


@router.post("/test", responses=ERRORS)
async def run_tests(
    body: schemas.TestRequest, tenant: Simulate, request: Request, rego: RegoDep
) -> schemas.TestReport:
    """Run every PolicyTest case against the drafts (or the published set)."""
    await limit_rate(request, tenant, "test")
    async with tenant.session() as session:
        prepared = await policies.prepare_selected(
            session, tenant.organization_id, _keys(request), draft=body.draft
        )
    report = await policies.test(rego, tenant.organization_id, prepared)
    observability.policy_tests(report["passed"], report["total"], len(report["failures"]))
    return schemas.TestReport.model_validate(report)


@router.post("/publish", status_code=201, responses=ERRORS)
async def publish(
    tenant: Publish,
    request: Request,
    rego: RegoDep,
    body: schemas.PublishRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> schemas.BundleRevision:
    """Validate the drafts, run their tests, compile and sign a new bundle revision.

    Failing tests are a 409 listing them; nothing changes then. With the organisation's
    `require_replay_before_publish` on, so is a draft set without a clean replay, unless
    `accept_replay` names a completed replay of it (an audited acknowledgement).
    With an `Idempotency-Key` the request is safe to send again (after a lost answer):
    a repeat within 24 h answers the revision the first one stored.
    """
    body = body or schemas.PublishRequest()  # the contract needs no body: all fields default
    await limit_rate(request, tenant, "publish")
    row = await release.publish(
        _release(request, tenant, rego),
        accept_replay=body.accept_replay,
        message=body.message,
        idempotency_key=idempotency_key,
    )
    await announce(request, row)
    return revision_out(row)


@router.post("/rollback", status_code=201, responses=ERRORS)
async def rollback(
    body: schemas.RollbackRequest,
    tenant: Publish,
    request: Request,
    rego: RegoDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.BundleRevision:
    """Publish what an earlier revision held as a new, higher revision (with an
    `Idempotency-Key`, safe to send again, as for publish)."""
    await limit_rate(request, tenant, "publish")
    row = await release.rollback(
        _release(request, tenant, rego),
        revision=body.revision,
        message=body.message,
        idempotency_key=idempotency_key,
    )
    await announce(request, row)
    return revision_out(row)


@router.get("/{policy_id}", responses=ERRORS)
async def get_policy(policy_id: uuid.UUID, tenant: Read) -> schemas.Policy:
    async with tenant.session() as session:
        return policy_out(await policies.get_policy_source(session, policy_id))


@router.delete("/{policy_id}", status_code=204, responses=ERRORS)
async def delete_policy(policy_id: uuid.UUID, tenant: Delete, rego: RegoDep) -> Response:
    """Remove the policy from the drafts; it leaves the bundle at the next publish."""
    async with tenant.session() as session:
        drafts = await policies.drafts_without(session, policy_id)
    await policies.check(rego, tenant.organization_id, drafts)
    async with tenant.session() as session:
        await policies.delete(
            session, tenant.organization_id, tenant.actor, policy_id, checked=drafts
        )
    return Response(status_code=204)


@router.get("/{policy_id}/versions", responses=ERRORS)
async def list_versions(policy_id: uuid.UUID, tenant: Read) -> schemas.VersionList:
    async with tenant.session() as session:
        policy, rows = await policies.list_versions(session, policy_id)
    return schemas.VersionList(
        items=[
            schemas.PolicyVersion(
                version=v.version,
                sha256=v.sha256,
                created_at=v.created_at,
                created_by=v.created_by,
                published=v.version == policy.published_version,
            )
            for v in rows
        ]
    )


@router.get("/{policy_id}/versions/{version}", responses=ERRORS)
async def get_version(
    policy_id: uuid.UUID, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], tenant: Read
) -> schemas.PolicyVersion:
    async with tenant.session() as session:
        policy, row = await policies.get_version(session, policy_id, version)
    return schemas.PolicyVersion(
        version=row.version,
        sha256=row.sha256,
        created_at=row.created_at,
        created_by=row.created_by,
        published=row.version == policy.published_version,
        source=row.source,
    )


@router.get("/{policy_id}/diff", responses=ERRORS)
async def diff(
    policy_id: uuid.UUID,
    tenant: Read,
    from_: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    to: Annotated[int, Query(ge=1, le=MAX_VERSION)],
) -> dict[str, Any]:
    """A unified diff between two versions of the policy."""
    async with tenant.session() as session:
        text = await policies.diff(session, policy_id, from_, to)
    return {"from": from_, "to": to, "diff": text}
