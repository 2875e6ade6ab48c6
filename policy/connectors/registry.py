"""The connector types and what one does: test a connection, run a statement (SQL types)
or an object call (object-store types)."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from policy.connectors import mysql, postgresql
from policy.connectors.base import ConnectionSettings, ConnectorError, QueryResult
from policy.connectors.network import dial_address
from policy.connectors.objects import (
    OPERATIONS,
    AzureBlobSettings,
    ObjectCall,
    ObjectResult,
    ObjectStoreSettings,
    S3Settings,
)
from policy.connectors.sql import ParsedSql, parse_sql
from policy.net.outbound import OutboundGuard


@dataclass(frozen=True)
class ConnectorType:
    name: str
    dialect: str  # sqlglot's
    default_port: int
    test: Callable[[ConnectionSettings, str, str], Awaitable[str]]
    run: Callable[[ConnectionSettings, str, str, str, ParsedSql], Awaitable[QueryResult]]


TYPES: dict[str, ConnectorType] = {
    "postgresql": ConnectorType(
        "postgresql", postgresql.DIALECT, postgresql.DEFAULT_PORT, postgresql.test, postgresql.run
    ),
    "mysql": ConnectorType("mysql", mysql.DIALECT, mysql.DEFAULT_PORT, mysql.test, mysql.run),
}


@dataclass(frozen=True)
class ObjectStoreType:
    name: str
    settings: type[ObjectStoreSettings]
    test: Callable[[Any, str, OutboundGuard], Awaitable[str]]
    run: Callable[[Any, str, OutboundGuard, ObjectCall], Awaitable[ObjectResult]]


def _on_first_call(module: str, function: str) -> Callable[..., Awaitable[Any]]:
    """`policy.connectors.<module>.<function>`, its module imported when first called: the
    object stores' SDKs (azure-storage-blob with aiohttp, aiobotocore) take ~0.3 s of CPU to
    import, in every control-plane and gateway process, most of which never call one."""

    async def call(*args: Any) -> Any:
        driver = importlib.import_module(f"policy.connectors.{module}")
        return await getattr(driver, function)(*args)

    return call


OBJECT_TYPES: dict[str, ObjectStoreType] = {
    "s3": ObjectStoreType(
        "s3", S3Settings, _on_first_call("s3", "test"), _on_first_call("s3", "run")
    ),
    "azure_blob": ObjectStoreType(
        "azure_blob",
        AzureBlobSettings,
        _on_first_call("azure_blob", "test"),
        _on_first_call("azure_blob", "run"),
    ),
}
KINDS = (*TYPES, *OBJECT_TYPES)
Settings = ConnectionSettings | ObjectStoreSettings


def settings_from_dict(raw: Any) -> Settings:
    """A connector's stored or bundled settings, by their `type`; ValueError naming the field."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in TYPES:
        return ConnectionSettings.from_dict(raw)
    if kind in OBJECT_TYPES:
        return OBJECT_TYPES[kind].settings.from_dict(raw)
    raise ValueError(f"unknown connector type {kind!r} (one of {', '.join(KINDS)})")


def operations_of(settings: Settings) -> tuple[str, ...]:
    """The operations an agent's tool may name on a connector of these settings."""
    return OPERATIONS if isinstance(settings, ObjectStoreSettings) else ("sql.query",)


def endpoint_url(settings: Settings) -> str:
    """The URL the outbound guard judges for these settings (a database: its host and port)."""
    if isinstance(settings, ObjectStoreSettings):
        return settings.endpoint
    literal = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"https://{literal}:{settings.port}/"


def connector_type(settings: ConnectionSettings) -> ConnectorType:
    try:
        return TYPES[settings.type]
    except KeyError:
        raise ValueError(f"unknown connector type {settings.type!r}") from None


async def test_connection(settings: Settings, password: str | None, guard: OutboundGuard) -> str:
    """The server's version string (a store: what it reached), or ConnectorError saying what
    failed."""
    if not password:
        raise ConnectorError("credential_missing", "no credential is stored for this connector")
    if isinstance(settings, ObjectStoreSettings):
        return await OBJECT_TYPES[settings.type].test(settings, password, guard)
    kind = connector_type(settings)
    address = await dial_address(guard, settings)
    return await kind.test(settings, password, address)


def parse_for(settings: ConnectionSettings, sql: str) -> ParsedSql:
    """The statement's operation and tables as this connector's dialect reads them
    (`SqlRefused` for what it will not run)."""
    return parse_sql(sql, connector_type(settings).dialect, settings.default_schema)


async def run_sql(
    settings: ConnectionSettings,
    password: str | None,
    guard: OutboundGuard,
    sql: str,
    parsed: ParsedSql,
) -> QueryResult:
    """Run a statement already parsed (and authorized, table by table) by the caller."""
    if parsed.operation == "write" and settings.read_only:
        raise ConnectorError("read_only", f"the connector is read-only; {parsed.statement} writes")
    if not password:
        raise ConnectorError("credential_missing", "no password is stored for this connector")
    kind = connector_type(settings)
    address = await dial_address(guard, settings)
    return await kind.run(settings, password, address, sql, parsed)


async def run_object_call(
    settings: ObjectStoreSettings, secret: str | None, guard: OutboundGuard, call: ObjectCall
) -> ObjectResult:
    """Run an object call already authorized by the caller, within the connector's own
    bounds (read-only, its buckets, max_bytes for a put), each refused before any request."""
    if call.action == "write" and settings.read_only:
        raise ConnectorError("read_only", f"the connector is read-only; {call.operation} writes")
    if settings.buckets and call.bucket not in settings.buckets:
        raise ConnectorError(
            "bucket_not_served",
            f"bucket {call.bucket!r} is not one this connector serves "
            f"({', '.join(settings.buckets)})",
        )
    if call.content is not None and len(call.content) > settings.max_bytes:
        raise ConnectorError(
            "too_large",
            f"the content is {len(call.content)} bytes, over max_bytes={settings.max_bytes}",
        )
    if not secret:
        raise ConnectorError("credential_missing", "no credential is stored for this connector")
    return await OBJECT_TYPES[settings.type].run(settings, secret, guard, call)
