"""Organisation email domains, verified by a DNS TXT record."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from control_plane.schemas.base import Input, Output
from control_plane.schemas.sso import Domain


class DomainCreate(Input):
    domain: Domain


class DomainOut(Output):
    id: uuid.UUID
    domain: str
    verified: bool
    verified_at: datetime | None
    txt_name: str = Field(description="Where to publish the TXT record (the domain itself).")
    txt_value: str = Field(description="The TXT record's value: kaizen-studio-verification=…")
    created_at: datetime
