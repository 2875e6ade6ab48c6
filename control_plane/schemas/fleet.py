from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, StringConstraints

from control_plane.schemas.base import Input, Name, Output

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^https?://\S+$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
BIG = 2**62  # fits the database's 64-bit integers
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.:-]+$")]


class GatewayCreate(Input):
    name: Name
    environment: Literal["dev", "stage", "prod"]
    url: Url
    mode: Literal["shared", "dedicated"] = "shared"


class Gateway(Output):
    id: uuid.UUID
    name: str
    environment: str
    url: str
    mode: str
    credential_prefix: str
    last_seen_at: datetime | None
    created_at: datetime


class GatewayCreated(Gateway):
    credential: str = Field(description="Shown once: the gateway's and its sidecar's token.")


class Instance(Output):
    instance: str
    bundle_revision: int | None
    key_id: str | None
    last_sync: datetime | None
    decisions: dict[str, int]
    log_backlog: int
    started_at: datetime | None
    reported_at: datetime
    stale: bool


class GatewayDetail(Gateway):
    current_revision: int | None
    instances: list[Instance]


class GatewaySelf(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    environment: str
    url: str
    bundle_scope: str


class BudgetReport(Input):
    """One budget's counter in its current period window (docs/runtime-protocols.md)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    # Lengths are the budget_usage columns' (a longer value was a 500 found by the fuzzer).
    name: str = Field(min_length=1, max_length=128)
    scope: str = Field(min_length=1, max_length=320)
    metric: str = Field(min_length=1, max_length=32)
    period: str = Field(min_length=1, max_length=16)
    window: str = Field(min_length=1, max_length=32)
    used: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    limit: float = Field(allow_inf_nan=False, ge=0, le=1e15)
    soft_limit: float | None = Field(default=None, allow_inf_nan=False, ge=0, le=1e15)


class BudgetOut(Output):
    """A budget in force: from a BudgetPolicy of the current bundle revision."""

    name: str
    scope: str
    metric: str
    period: str
    limit: float
    soft_limit: float | None
    actions: list[str]
    bundle_revision: int


class BudgetUsageOut(Output):
    id: uuid.UUID
    budget: str
    scope: str
    metric: str
    period: str
    window: str
    used: float
    limit: float
    soft_limit: float | None
    reported_at: datetime
    gateway_id: uuid.UUID | None


class StatusReport(Input):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    instance: ShortText = Field(min_length=1)
    bundle_revision: int | None = Field(default=None, ge=0, le=BIG)
    key_id: str | None = Field(default=None, max_length=64)  # the column's length
    last_sync: datetime | None = None
    decisions: dict[str, int] = Field(default_factory=dict)
    log_backlog: int = Field(default=0, ge=0, le=BIG)
    started_at: datetime | None = None
    # Bundles this instance refused since it started (bad signature, unknown key, wrong
    # scope, older revision); a growing count raises security.bundle_verification_failed.
    bundle_verification_failures: int = Field(default=0, ge=0, le=BIG)
    last_verification_error: str | None = Field(default=None, max_length=4000)
    # The counters of the served bundle's budgets (current windows): the organisation's usage.
    budgets: list[BudgetReport] = Field(default_factory=list, max_length=1000)


class DecisionRecord(Input):
    decision_id: Identifier
    time: datetime
    input: dict[str, Any]
    result: dict[str, Any]
    duration_us: int | None = Field(default=None, ge=0, le=BIG)
    instance: ShortText | None = None


class DecisionBatch(Input):
    decisions: list[DecisionRecord] = Field(max_length=1000)


class ExecutionRecord(Input):
    id: Identifier
    time: datetime
    principal: Annotated[str, StringConstraints(max_length=320)] | None = None
    kind: Literal["agent", "pipeline"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    channel: Literal["api", "cli", "mcp"] | None = None
    status: Literal["succeeded", "failed"]
    tokens_in: int = Field(default=0, ge=0, le=BIG)
    tokens_out: int = Field(default=0, ge=0, le=BIG)
    cost_usd: float = Field(default=0.0, ge=0, le=1e12, allow_inf_nan=False)
    latency_ms: float = Field(default=0.0, ge=0, le=1e12, allow_inf_nan=False)
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None
    decision_id: Identifier | None = None


class ExecutionBatch(Input):
    executions: list[ExecutionRecord] = Field(max_length=1000)


class IngestResult(Output):
    accepted: int
    duplicates: int


class Decision(Output):
    decision_id: str
    time: datetime
    gateway_id: uuid.UUID | None
    instance: str | None
    principal: str | None
    action: str | None
    resource: str | None
    channel: str | None
    outcome: str
    bundle_revision: str | None
    duration_us: int | None
    input: dict[str, Any]
    result: dict[str, Any]


class Execution(Output):
    # The row's `execution_id`, answered as `id` (and read back as `id` by the client).
    id: str = Field(validation_alias=AliasChoices("execution_id", "id"))
    time: datetime
    gateway_id: uuid.UUID | None
    principal: str | None
    kind: str
    name: str
    channel: str | None
    status: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    error: str | None
    decision_id: str | None
