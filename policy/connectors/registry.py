"""The connector types and the two things one does: test a connection, run a statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from policy.connectors import mysql, postgresql
from policy.connectors.base import ConnectionSettings, ConnectorError, QueryResult
from policy.connectors.network import dial_address
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


def connector_type(settings: ConnectionSettings) -> ConnectorType:
    try:
        return TYPES[settings.type]
    except KeyError:
        raise ValueError(f"unknown connector type {settings.type!r}") from None


async def test_connection(
    settings: ConnectionSettings, password: str | None, guard: OutboundGuard
) -> str:
    """The server's version string, or ConnectorError saying what failed."""
    if not password:
        raise ConnectorError("credential_missing", "no password is stored for this connector")
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
