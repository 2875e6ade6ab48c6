from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from control_plane.schemas.base import Input, Output
from control_plane.schemas.fleet import GatewayDetail
from control_plane.schemas.policies import PolicySource

MAX_VERSION = 2**31 - 1  # versions are 32-bit integers in the database
WorkloadName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class WorkloadSource(PolicySource):
    """`source`: YAML or JSON, one or more Agent (or Pipeline) documents (`---`)."""


class Workload(Output):
    id: uuid.UUID
    kind: str = Field(description="agent or pipeline")
    name: str
    description: str | None
    latest_version: int
    config: dict[str, Any] = Field(description="The latest version, as validated.")
    created_at: datetime
    updated_at: datetime


class WorkloadApplied(Output):
    items: list[Workload]
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class WorkloadVersion(Output):
    version: int
    sha256: str
    created_at: datetime
    created_by: str | None
    config: dict[str, Any] | None = None
    source: str | None = Field(default=None, description="The document as it was sent.")


class WorkloadVersionList(Output):
    items: list[WorkloadVersion]


class DeploymentCreate(Input):
    gateway_id: uuid.UUID
    kind: Literal["agent", "pipeline"]
    name: WorkloadName
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Default: the latest version."
    )


class Endpoints(Output):
    api: str = Field(description="HTTP API: POST here with {input}.")
    cli: str | None = Field(
        description="The `kaizen-studio call` command line (`--pipeline` for a pipeline)."
    )
    mcp: str = Field(description="MCP Streamable HTTP endpoint; the workload is a tool there.")


class Deployment(Output):
    id: uuid.UUID
    gateway_id: uuid.UUID
    gateway_name: str
    kind: str
    name: str
    version: int
    requires: dict[str, int] = Field(
        description="Agents it references (tools, pipeline roles) and the versions carried."
    )
    endpoints: Endpoints
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class DeploymentCreated(Deployment):
    bundle_revision: int | None = Field(
        description="The bundle revision signed with this deployment; null when the "
        "organisation has never published (it rides the first publish)."
    )


class GatewayWithDeployments(GatewayDetail):
    deployments: list[Deployment]
