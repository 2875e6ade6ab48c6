from __future__ import annotations

from datetime import datetime

from control_plane.schemas.base import Output


class PlanLimitOut(Output):
    name: str  # users | agents | gateways | executions_per_month
    limit: int | None  # None: unlimited
    used: int
    # Where it is enforced: `control_plane` (refused with 402 when something is created)
    # or `sidecar` (an org-scope budget in the bundle, denied at decision time).
    enforced_by: str


class PlanOut(Output):
    plan: str
    title: str
    # An Enterprise contract's own limits, by name (None: unlimited).
    overrides: dict[str, int | None]
    limits: list[PlanLimitOut]
    updated_at: datetime | None
