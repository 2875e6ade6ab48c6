from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StringConstraints

from control_plane.schemas.base import Input, Output

ConnectorName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
ConnectorType = Literal["postgresql", "mysql"]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
MAX_VERSION = 1_000_000


class ConnectionSettingsIn(Input):
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[int | None, Field(ge=1, le=65535)] = Field(
        default=None, description="Default: 5432 (postgresql), 3306 (mysql)."
    )
    database: Identifier
    username: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    schema_: Identifier | None = Field(
        default=None,
        alias="schema",
        description="Where unqualified tables are: default `public` (postgresql), the "
        "database (mysql).",
    )
    tls: Literal["disable", "require", "verify-full"] = "verify-full"
    read_only: bool = True
    max_rows: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_bytes: Annotated[int, Field(ge=1, le=50_000_000)] = 1_000_000
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0


class ConnectorCreate(Input):
    name: ConnectorName
    type: ConnectorType
    settings: ConnectionSettingsIn
    password: Password | None = Field(
        default=None, description="Write-only: stored in the secret store, never returned."
    )


class ConnectorUpdate(Input):
    settings: ConnectionSettingsIn | None = None
    password: Password | None = Field(default=None, description="Write-only; replaces it.")


class Connector(Output):
    id: uuid.UUID
    name: str
    type: str
    latest_version: int
    settings: dict[str, Any]
    has_credential: bool
    credential_updated_at: datetime | None
    agents: list[str] = Field(description="Agents whose latest config names this connector.")
    created_at: datetime
    updated_at: datetime


class ConnectorVersion(Output):
    version: int
    settings: dict[str, Any]
    created_at: datetime
    created_by: str | None


class ConnectorVersionList(Output):
    items: list[ConnectorVersion]


class ConnectionTest(Output):
    ok: bool
    code: str | None = Field(
        default=None,
        description="When not ok: auth_failed, unreachable, tls, refused, database, "
        "credential_missing.",
    )
    message: str
    server_version: str | None = None
