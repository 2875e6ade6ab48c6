from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StringConstraints

from control_plane.schemas.base import Input, Output

ConnectorName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
ConnectorType = Literal["postgresql", "mysql", "s3", "azure_blob"]
BucketName = Annotated[
    str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
]
EndpointUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
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


class ObjectStoreSettingsIn(Input):
    buckets: list[BucketName] = Field(
        default_factory=list,
        max_length=100,
        description="The only buckets (Azure: containers) served; empty: any. A connection "
        "test reaches each.",
    )
    read_only: bool = True
    max_bytes: Annotated[int, Field(ge=1, le=50_000_000)] = Field(
        default=1_000_000, description="objects.get is cut here; a larger objects.put refused."
    )
    max_objects: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1000, description="objects.list is cut here."
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0


class S3SettingsIn(ObjectStoreSettingsIn):
    access_key_id: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9]+$")
    ]
    region: Annotated[
        str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")
    ] = "us-east-1"
    endpoint_url: EndpointUrl | None = Field(
        default=None,
        description="A service speaking the S3 API; default AWS's https://s3.<region>.amazonaws.com.",
    )


class AzureBlobSettingsIn(ObjectStoreSettingsIn):
    account_name: Annotated[
        str, StringConstraints(min_length=3, max_length=24, pattern=r"^[a-z0-9]+$")
    ]
    account_url: EndpointUrl | None = Field(
        default=None, description="Default https://<account_name>.blob.core.windows.net."
    )


Credential = Field(
    default=None,
    description="Write-only: stored in the secret store, never returned. The database "
    "password; for s3 the secret access key; for azure_blob the account key.",
)


class SqlConnectorCreate(Input):
    name: ConnectorName
    type: Literal["postgresql", "mysql"]
    settings: ConnectionSettingsIn
    password: Password | None = Credential


class S3ConnectorCreate(Input):
    name: ConnectorName
    type: Literal["s3"]
    settings: S3SettingsIn
    password: Password | None = Credential


class AzureBlobConnectorCreate(Input):
    name: ConnectorName
    type: Literal["azure_blob"]
    settings: AzureBlobSettingsIn
    password: Password | None = Credential


ConnectorCreate = Annotated[
    SqlConnectorCreate | S3ConnectorCreate | AzureBlobConnectorCreate,
    Field(discriminator="type"),
]
SettingsIn = ConnectionSettingsIn | S3SettingsIn | AzureBlobSettingsIn


class ConnectorUpdate(Input):
    settings: SettingsIn | None = Field(
        default=None, description="The whole settings of the connector's type: the next version."
    )
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
        "credential_missing; object stores also no_bucket, request_failed, timeout.",
    )
    message: str
    server_version: str | None = None
