from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from control_plane.api.deps import KeyRingDep
from control_plane.db.session import SYSTEM

router = APIRouter(tags=["system"])


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def healthz(request: Request) -> JSONResponse:
    """Ready when the database (and Redis, when configured) answer."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        async with state.db.session(SYSTEM) as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; say which
        checks["database"] = f"error: {type(error).__name__}"
    if state.settings.redis_url:
        checks["redis"] = "ok" if await state.kv.ping() else "error"
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
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/.well-known/jwks.json")
async def jwks(keys: KeyRingDep) -> dict[str, Any]:
    """Public keys of the access tokens and approval grants the control plane issues.

    Bundle signatures use each organisation's own keys: `/api/v1/bundles/{scope}/jwks.json`.
    """
    published: dict[str, Any] = keys.jwks()
    return published
