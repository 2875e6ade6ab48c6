from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from control_plane.api.deps import DatabaseDep, KeyRingDep, KeyValueDep, MetricsDep, SettingsDep
from control_plane.services import health

router = APIRouter(tags=["system"])


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def healthz(db: DatabaseDep, kv: KeyValueDep, settings: SettingsDep) -> JSONResponse:
    """Ready when the database (and Redis, when configured) answer."""
    checks = await health.readiness(db, kv, redis=bool(settings.redis_url))
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json")
async def jwks(keys: KeyRingDep) -> dict[str, Any]:
    """Public keys of the access tokens and approval grants the control plane issues.

    Bundle signatures use each organisation's own keys: `/api/v1/bundles/{scope}/jwks.json`.
    """
    published: dict[str, Any] = keys.jwks()
    return published
