from __future__ import annotations

from datetime import datetime

from pydantic import Field

from control_plane.schemas.base import Output


class PlanLimitOut(Output):
    name: str  # users | agents | gateways | executions_per_month
    limit: int | None  # None: unlimited
    used: int
    # Where it is enforced: `control_plane` (refused with 402 when something is created)
    # or `sidecar` (an org-scope budget in the bundle, denied at decision time).
    enforced_by: str


class PlanWarningOut(Output):
    """This month's executions warning (90 % of the plan's limit), sent once."""

    window: str  # "month:2026-12"
    plan: str
    used: int  # the sidecars' counter when it crossed
    limit: int
    at: datetime


class PlanOut(Output):
    plan: str
    title: str
    # An Enterprise contract's own limits, by name (None: unlimited).
    overrides: dict[str, int | None]
    limits: list[PlanLimitOut]
    updated_at: datetime | None
    # Set when this month's executions passed 90 % of the plan's limit.
    warning: PlanWarningOut | None = None


class UsageRow(Output):
    """One group's totals; a key is present when grouped by it (null: none, e.g. a call
    made by a user has no `api_key`, a call outside any workspace no `workspace`)."""

    day: str | None = None
    workspace: str | None = None
    kind: str | None = None  # agent | pipeline, with `agent`
    agent: str | None = None
    api_key: str | None = None
    executions: int
    tokens_in: int
    tokens_out: int
    tokens: int
    cost_usd: float


class UsageTotalsTotal(Output):
    executions: int
    tokens_in: int
    tokens_out: int
    tokens: int
    cost_usd: float


class UsageTotalsOut(Output):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    group_by: list[str]
    items: list[UsageRow]
    total: UsageTotalsTotal
