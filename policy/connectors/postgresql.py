"""PostgreSQL through asyncpg: one connection per call, one transaction, prepared statements.

Reads run in `BEGIN READ ONLY` (so a function with side effects cannot write either);
writes only on a connector with `read_only: false`. Statements are prepared (the extended
protocol runs exactly one), `search_path` is pinned to the default schema the parser
qualified unqualified names with, and `statement_timeout` to the connector's timeout.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import asyncpg

from policy.connectors.base import (
    ConnectionSettings,
    ConnectorError,
    QueryResult,
    RowCollector,
)
from policy.connectors.network import tls_context
from policy.connectors.sql import ParsedSql

DIALECT = "postgres"
DEFAULT_PORT = 5432
_PREFETCH = 200


async def _connect(settings: ConnectionSettings, password: str, address: str) -> Any:
    context = tls_context(settings)
    try:
        return await asyncpg.connect(
            host=address,
            port=settings.port,
            user=settings.username,
            password=password,
            database=settings.database,
            ssl=context if context is not None else False,
            timeout=settings.timeout_seconds,
            statement_cache_size=0,
            server_settings={
                "application_name": "kaizen-studio-connector",
                "search_path": settings.default_schema,
                "statement_timeout": str(int(settings.timeout_seconds * 1000)),
            },
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise ConnectorError(
            "auth_failed",
            f"PostgreSQL at {settings.host}:{settings.port} refused user "
            f"{settings.username!r} (wrong password or no access)",
        ) from None
    except asyncpg.InvalidCatalogNameError:
        raise ConnectorError(
            "database", f"database {settings.database!r} does not exist on {settings.host}"
        ) from None
    except ssl.SSLError as error:
        raise ConnectorError("tls", f"TLS with {settings.host} failed: {error.reason}") from None
    except ConnectionError as error:
        if "SSL" in str(error):
            raise ConnectorError(
                "tls", f"PostgreSQL at {settings.host}:{settings.port} does not offer TLS"
            ) from None
        raise ConnectorError("unreachable", _unreachable(settings, error)) from None
    except (OSError, TimeoutError) as error:
        raise ConnectorError("unreachable", _unreachable(settings, error)) from None
    except asyncpg.PostgresError as error:
        raise ConnectorError("database", f"PostgreSQL refused the connection: {error}") from None


def _unreachable(settings: ConnectionSettings, error: BaseException) -> str:
    return f"PostgreSQL at {settings.host}:{settings.port} is unreachable ({type(error).__name__})"


async def test(settings: ConnectionSettings, password: str, address: str) -> str:
    """Connect, authenticate and ask the version in a read-only transaction."""
    connection = await _connect(settings, password, address)
    try:
        async with connection.transaction(readonly=True):
            version: str = await connection.fetchval("SELECT version()")
        return version
    finally:
        await _close(connection, settings)


async def run(
    settings: ConnectionSettings, password: str, address: str, sql: str, parsed: ParsedSql
) -> QueryResult:
    result = QueryResult(parsed.operation, parsed.statement, list(parsed.tables))
    connection = await _connect(settings, password, address)
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            async with connection.transaction(readonly=parsed.operation == "read"):
                statement = await connection.prepare(sql)
                result.columns = [a.name for a in statement.get_attributes()]
                if not result.columns:
                    await statement.fetch()
                else:
                    rows = RowCollector(result, settings.max_rows, settings.max_bytes)
                    async for record in statement.cursor(prefetch=_PREFETCH):
                        if not rows.add(tuple(record)):
                            break
                result.status = statement.get_statusmsg() or None
    except TimeoutError:
        raise ConnectorError(
            "timeout", f"the statement ran past timeout_seconds={settings.timeout_seconds:g}"
        ) from None
    except asyncpg.QueryCanceledError:
        raise ConnectorError(
            "timeout", f"the statement ran past timeout_seconds={settings.timeout_seconds:g}"
        ) from None
    except asyncpg.PostgresError as error:
        raise ConnectorError("query_failed", f"PostgreSQL: {error}") from None
    finally:
        await _close(connection, settings)
    return result


async def _close(connection: Any, settings: ConnectionSettings) -> None:
    """Close cleanly, or drop the connection when a cut call left it mid-transaction (the
    server rolls back)."""
    if connection.is_closed():
        return
    if connection.is_in_transaction():
        connection.terminate()
    else:
        await connection.close(timeout=settings.timeout_seconds)
