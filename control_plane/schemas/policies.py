from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from control_plane.schemas.base import Input, Output

# 1 MiB of policy text per request: far beyond any real policy, small enough to parse fast.
PolicyText = Annotated[str, StringConstraints(min_length=1, max_length=1_048_576)]


class PolicySource(Input):
    # Whitespace is part of the text: stripping it would shift every line number we report.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    source: PolicyText = Field(description="YAML or JSON, one or more documents (`---`).")


class Policy(Output):
    id: uuid.UUID
    name: str
    kind: str
    latest_version: int
    published_version: int | None
    status: str = Field(description="draft, published or deleted")
    created_at: datetime
    updated_at: datetime
    source: str | None = Field(description="The latest version's text; absent once deleted.")


class PolicyApplied(Output):
    items: list[Policy]
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class ValidationReport(Output):
    valid: bool
    details: list[dict[str, Any]]


class PolicyVersion(Output):
    version: int
    sha256: str
    created_at: datetime
    created_by: str | None
    published: bool
    source: str | None = None


class VersionList(Output):
    items: list[PolicyVersion]


class PolicyDiff(Output):
    from_version: int = Field(serialization_alias="from")
    to_version: int = Field(serialization_alias="to")
    diff: str


class SimulateRequest(Input):
    input: dict[str, Any] = Field(description="A decision input (CONTRACTS.md).")
    draft: bool = Field(default=True, description="Against the drafts (true) or what is published.")


class TestRequest(Input):
    draft: bool = True


class TestCaseResult(Output):
    document: str
    case: str
    passed: bool


class TestReport(Output):
    passed: bool
    total: int
    cases: list[TestCaseResult] = Field(description="Every case run, passed or not.")
    failures: list[dict[str, Any]]
    report: str


class PublishRequest(Input):
    message: Annotated[str, StringConstraints(max_length=1000)] = ""
    accept_replay: uuid.UUID | None = Field(
        default=None,
        description="A completed replay of exactly these drafts whose changes you accept.",
    )


class RollbackRequest(Input):
    revision: int = Field(ge=1, le=2**62)
    message: Annotated[str, StringConstraints(max_length=1000)] = ""


class BundleRevision(Output):
    revision: int
    reason: str
    message: str
    key_id: str
    etag: str
    sha256: str
    size: int
    policies: dict[str, int]
    created_at: datetime
    created_by: str | None
    scope: str
