"""The decision log's API shapes: search filters (query strings), records, chain, OPA events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from control_plane.schemas.base import Output, QueryText
from control_plane.schemas.fleet import BIG, Identifier

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)
Outcome = Literal["allow", "deny", "require_approval", "unknown"]
Channel = Literal["api", "cli", "mcp"]


class DecisionQuery(BaseModel):
    """Filters shared by search, export and aggregates; an unknown parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(None, description="RFC 3339; decisions at or after.")
    until: AwareDatetime | None = Field(None, description="RFC 3339; decisions before.")
    principal: QueryText | None = Field(None, description="Exact, e.g. user:alice@example.com")
    action: QueryText | None = None
    resource: QueryText | None = Field(None, description="Glob: `*` matches any run of text.")
    outcome: Outcome | None = None
    reason: QueryText | None = Field(None, description="Text any reason contains (any case).")
    channel: Channel | None = None
    gateway: uuid.UUID | None = Field(None, description="Gateway id.")
    workspace: QueryText | None = None
    bundle_revision: Annotated[str, StringConstraints(pattern=r"^\d{1,18}$")] | None = None
    decision_id: Identifier | None = None

    @field_validator("since", "until")
    @classmethod
    def _in_range(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None
        if not EARLIEST <= moment <= LATEST:
            raise ValueError("must be between 1970 and 9998")
        return moment

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until < since:
            raise ValueError("must not be before since")
        return until


class DecisionSearch(DecisionQuery):
    cursor: Annotated[str, StringConstraints(max_length=300)] | None = Field(
        None, description="`next_cursor` of the previous page."
    )
    limit: int = Field(100, ge=1, le=500)


class DecisionExport(DecisionQuery):
    format: Literal["ndjson", "csv"] = "ndjson"


class AggregateQuery(DecisionQuery):
    by: Literal["outcome", "principal", "resource"] = "outcome"
    interval: Literal["hour", "day"] = "hour"
    top: int = Field(10, ge=1, le=100, description="Keys with the most decisions in the window.")


class Decision(Output):
    decision_id: str
    time: datetime
    sequence: int
    source: str
    gateway_id: uuid.UUID | None
    instance: str | None
    principal: str | None
    action: str | None
    resource: str | None
    workspace: str | None
    channel: str | None
    outcome: str
    bundle_revision: str | None
    duration_us: int | None
    input: dict[str, Any]
    result: dict[str, Any]


class DecidingBundle(Output):
    revision: int
    policies: dict[str, int] = Field(description="Policy name → version in that revision.")
    key_id: str
    reason: str
    created_at: datetime


class DecisionDetail(Decision):
    chain_hash: str
    ingested_at: datetime
    bundle: DecidingBundle | None = Field(
        description="The bundle revision that decided, when it was published here."
    )


class BrokenLink(Output):
    sequence: int
    decision_id: str | None
    expected: str
    found: str
    reason: Literal["altered", "missing", "duplicate", "head"]


class DecisionChainVerification(Output):
    ok: bool
    checked: int
    head_sequence: int
    head_hash: str
    expired_ranges: int
    first_broken: BrokenLink | None


class Bucket(BaseModel):
    start: datetime
    counts: dict[str, int]
    total: int


class Aggregates(BaseModel):
    by: str
    interval: str
    since: datetime
    until: datetime
    keys: list[str] = Field(description="The top keys, most decisions first.")
    buckets: list[Bucket]


class Retention(Output):
    retention_days: int
    expired_before: datetime | None


class RetentionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(ge=1, le=36500)


class IngestRecord(BaseModel):
    """One decision as a sidecar logged it. Only the envelope is typed: `input` and
    `result` are kept as sent (masked at source) and the search columns taken from them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision_id: Identifier
    time: datetime
    # Checked to be objects and kept as parsed (not copied key by key: JSON keys are text).
    input: InstanceOf[dict[str, Any]]
    result: InstanceOf[dict[str, Any]]
    duration_us: int | None = Field(default=None, ge=0, le=BIG)
    # PostgreSQL text cannot hold NUL.
    instance: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] | None = None


class IngestBatch(BaseModel):
    """`POST /api/v1/decisions/ingest`: up to 1,000 decisions, stored in this order."""

    model_config = ConfigDict(extra="forbid")

    decisions: list[IngestRecord] = Field(max_length=1000)


class OpaEvent(BaseModel):
    """One event of OPA's decision-log upload; fields we do not use are ignored."""

    model_config = ConfigDict(extra="ignore")

    decision_id: Identifier
    timestamp: datetime
    path: Annotated[str, StringConstraints(max_length=500)] | None = None
    input: Any = None
    result: Any = None
    bundles: dict[str, dict[str, Any]] | None = None
    labels: dict[str, Any] | None = None
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None
    erased: list[str] | None = None
    masked: list[str] | None = None
    metrics: dict[str, Any] | None = None
