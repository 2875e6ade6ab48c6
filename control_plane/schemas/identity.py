from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, EmailStr, Field, StringConstraints

from control_plane.schemas.base import Description, Input, Name, Output

Role = Literal["owner", "admin", "security_admin", "developer", "operator", "auditor", "viewer"]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
OrganizationName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SignupRequest(Input):
    email: EmailStr
    password: Password
    organization: OrganizationName


class LoginRequest(Input):
    email: EmailStr
    password: Password
    totp: Annotated[str, StringConstraints(max_length=16)] | None = None
    organization_id: uuid.UUID | None = Field(
        default=None, description="Which of your organisations to act for (default: oldest)."
    )


class RefreshRequest(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenResponse(Output):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    user_id: uuid.UUID
    organization_id: uuid.UUID


class OrganizationRef(Output):
    id: uuid.UUID
    name: str
    role: Role


class Me(Output):
    kind: Literal["user", "api_key"]
    id: uuid.UUID
    label: str
    organization_id: uuid.UUID
    organization_name: str
    role: Role
    scopes: list[str]
    permissions: list[str]
    organizations: list[OrganizationRef]


class UserCreate(Input):
    email: EmailStr
    password: Password | None = Field(
        default=None, description="Required for a new person; omit to add an existing user."
    )
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    role: Role = "viewer"


class UserUpdate(Input):
    role: Role | None = None
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None


class Member(Output):
    id: uuid.UUID
    email: str
    display_name: str | None
    role: Role
    joined_at: datetime


class TeamCreate(Input):
    name: Name
    description: Description = ""


class TeamUpdate(Input):
    name: Name | None = None
    description: Description | None = None


class Team(Output):
    id: uuid.UUID
    name: str
    description: str
    created_at: datetime
    member_ids: list[uuid.UUID] = []


class TeamMemberAdd(Input):
    user_id: uuid.UUID


Environment = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")
]


class WorkspaceCreate(Input):
    name: Name
    environment: Environment = Field(description="dev, stage, prod or your own label")
    description: Description = ""


class WorkspaceUpdate(Input):
    name: Name | None = None
    environment: Environment | None = None
    description: Description | None = None


class Workspace(Output):
    id: uuid.UUID
    name: str
    environment: str
    description: str
    created_at: datetime


Scope = Annotated[str, StringConstraints(pattern=r"^[a-z_*]+:[a-z_*]+$", max_length=64)]


class ApiKeyCreate(Input):
    name: Name
    role: Role = Field(default="viewer", description="At most the creator's own permissions.")
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=64,
        description="Narrow the role further: `collection:action`, e.g. `agents:read`.",
    )
    expires_at: AwareDatetime | None = None


class ApiKey(Output):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    scopes: list[str]
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The secret. Shown once; only its hash is stored.")


class AuditEventOut(Output):
    id: uuid.UUID
    seq: int
    created_at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    action: str
    target_type: str
    target_id: str | None
    source_ip: str | None
    request_id: str | None
    summary: dict[str, object]
    prev_hash: str
    hash: str


class AuditChainVerification(Output):
    valid: bool
    events: int
    head_hash: str
    first_broken_seq: int | None
    first_broken_id: str | None
    reason: str | None
