"""MySQL and MariaDB through aiomysql: one connection per call, one transaction.

Reads run in `START TRANSACTION READ ONLY`; writes only on a connector with
`read_only: false`. The client never sets CLIENT_MULTI_STATEMENTS, so the server runs one
statement per call whatever the text holds; no parameters are passed, so the driver does
not %-format the text. Rows stream (unbuffered cursor) and the connection is closed as
soon as a limit cuts them. aiomysql quietly continues without TLS when the server offers
none: `tls_in_use` refuses such a connection before any statement runs.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiomysql
import pymysql

from policy.connectors.base import (
    ConnectionSettings,
    ConnectorError,
    QueryResult,
    RowCollector,
)
from policy.connectors.network import tls_context
from policy.connectors.sql import ParsedSql

DIALECT = "mysql"
DEFAULT_PORT = 3306
_FETCH = 200
_AUTH_ERRORS = {1044, 1045, 1698}  # access denied (database / user / unix-socket user)
_UNKNOWN_DATABASE = 1049


async def _connect(settings: ConnectionSettings, password: str, address: str) -> Any:
    context = tls_context(settings)
    try:
        connection = await aiomysql.connect(
            host=address,
            port=settings.port,
            user=settings.username,
            password=password,
            db=settings.database,
            ssl=context,
            connect_timeout=settings.timeout_seconds,
            autocommit=False,
            charset="utf8mb4",
            cursorclass=aiomysql.SSCursor,
        )
    except ssl.SSLError as error:
        raise ConnectorError("tls", f"TLS with {settings.host} failed: {error.reason}") from None
    except pymysql.err.OperationalError as error:
        code = error.args[0] if error.args else None
        if code in _AUTH_ERRORS:
            raise ConnectorError(
                "auth_failed",
                f"MySQL at {settings.host}:{settings.port} refused user {settings.username!r} "
                "(wrong password or no access)",
            ) from None
        if code == _UNKNOWN_DATABASE:
            raise ConnectorError(
                "database", f"database {settings.database!r} does not exist on {settings.host}"
            ) from None
        raise ConnectorError(
            "unreachable",
            f"MySQL at {settings.host}:{settings.port} is unreachable (error {code})",
        ) from None
    except (OSError, TimeoutError) as error:
        raise ConnectorError(
            "unreachable",
            f"MySQL at {settings.host}:{settings.port} is unreachable ({type(error).__name__})",
        ) from None
    if context is not None and not tls_in_use(connection):
        connection.close()
        where = f"{settings.host}:{settings.port}"
        raise ConnectorError("tls", f"MySQL at {where} does not offer TLS (tls: {settings.tls})")
    return connection


def tls_in_use(connection: Any) -> bool:
    writer = getattr(connection, "_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


async def test(settings: ConnectionSettings, password: str, address: str) -> str:
    connection = await _connect(settings, password, address)
    try:
        async with connection.cursor() as cursor:
            await cursor.execute("START TRANSACTION READ ONLY")
            await cursor.execute("SELECT VERSION()")
            row = await cursor.fetchone()
        await connection.rollback()
        return str(row[0])
    finally:
        connection.close()


async def run(
    settings: ConnectionSettings, password: str, address: str, sql: str, parsed: ParsedSql
) -> QueryResult:
    result = QueryResult(parsed.operation, parsed.statement, list(parsed.tables))
    connection = await _connect(settings, password, address)
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            cursor = await connection.cursor()
            mode = "READ ONLY" if parsed.operation == "read" else "READ WRITE"
            await cursor.execute(f"START TRANSACTION {mode}")
            await cursor.execute(sql)
            if cursor.description:
                result.columns = [d[0] for d in cursor.description]
                rows = RowCollector(result, settings.max_rows, settings.max_bytes)
                while batch := await cursor.fetchmany(_FETCH):
                    if not all(rows.add(row) for row in batch):
                        return result  # the connection is dropped below, rows unread
            else:
                result.status = f"{parsed.statement} {max(cursor.rowcount, 0)}"
            if parsed.operation == "write":
                await connection.commit()
            else:
                await connection.rollback()
    except TimeoutError:
        raise ConnectorError(
            "timeout", f"the statement ran past timeout_seconds={settings.timeout_seconds:g}"
        ) from None
    except pymysql.err.MySQLError as error:
        message = error.args[1] if len(error.args) > 1 else str(error)
        raise ConnectorError("query_failed", f"MySQL: {message}") from None
    finally:
        connection.close()  # an uncommitted transaction is rolled back by the server
    return result
