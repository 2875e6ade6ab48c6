from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from control_plane.schemas.base import Input, Output

Comment = Annotated[str, StringConstraints(max_length=2000)]


class Approval(Output):
    id: str = Field(description="The approval request id: the held decision's id.")
    status: str = Field(description="pending | approved | denied | expired")
    principal: str
    action: str
    resource: str
    args_hash: str = Field(description="SHA-256 of the canonical tool arguments (grant `args`).")
    reasons: list[str]
    approver_roles: list[str] = Field(
        description="Roles the policy named as approvers; empty: whoever may decide approvals."
    )
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None


class ApprovalDetail(Approval):
    grant: str | None = Field(
        default=None,
        description="The single-use approval grant (X-Kaizen-Approval): shown only to the "
        "requesting principal, only once approved and until it expires.",
    )
    grant_expires_at: datetime | None = None


class Decide(Input):
    comment: Comment | None = None


class GrantRedeem(Input):
    jti: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class GrantRedeemed(Output):
    approval_request_id: str
    used_at: datetime
