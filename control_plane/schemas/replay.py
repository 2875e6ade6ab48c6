from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from control_plane.schemas.base import Input, Output

MAX_REPLAY_DECISIONS = 1_000_000
MAX_EXAMPLES = 50


class ReplayRequest(Input):
    since: AwareDatetime = Field(description="Replay decisions made at or after this time.")
    until: AwareDatetime | None = Field(
        default=None, description="…and before this time (default: now)."
    )
    draft: bool = Field(
        default=True,
        description="Replay the drafts (true) or, for the whole set only, what is published.",
    )
    limit: int = Field(
        default=100_000,
        ge=1,
        le=MAX_REPLAY_DECISIONS,
        description="At most this many decisions, the most recent in the window.",
    )
    examples: int = Field(
        default=5, ge=0, le=MAX_EXAMPLES, description="Examples kept per outcome transition."
    )


class OutcomeSide(Output):
    outcome: str
    reasons: list[str]
    rules: list[str] = Field(default_factory=list)


class Example(Output):
    decision_id: str
    time: datetime
    input: dict[str, Any] = Field(description="Principal, action, resource, channel, tool.")
    old: OutcomeSide
    new: OutcomeSide


class Transition(Output):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    count: int
    risky: bool = Field(description="allow→deny, allow→require_approval or deny→allow.")
    examples: list[Example]


class ReplayResult(Output):
    total: int
    changed: int
    unchanged: int
    risky: int
    counts: dict[str, int] = Field(description='Every `old->new` pair seen, e.g. "allow->deny".')
    transitions: list[Transition] = Field(description="The changed outcomes, most frequent first.")


class Replay(Output):
    id: uuid.UUID
    status: Literal["queued", "running", "completed", "failed"]
    policy_id: uuid.UUID | None
    draft: bool
    policies: dict[str, int] = Field(description="The policy versions replayed, by name.")
    policies_hash: str
    since: datetime
    until: datetime
    limit: int
    examples: int
    total: int
    processed: int
    progress: float
    error: str | None
    created_at: datetime
    created_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: ReplayResult | None = None


class PolicySettings(Output):
    require_replay_before_publish: bool


class PolicySettingsUpdate(Input):
    require_replay_before_publish: bool
