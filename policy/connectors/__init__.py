"""Governed data connectors: one module per type, the SQL parser, limits and errors.

Shared by the control plane (test connection) and the gateway (runs `sql.query`), so it
lives in `policy/` like the outbound guard it dials through (ADR 0011). Types built:
`postgresql` (asyncpg) and `mysql` (aiomysql; MySQL and MariaDB).
"""

from __future__ import annotations

from policy.connectors.base import (
    ConnectionSettings,
    ConnectorError,
    ErrorCode,
    QueryResult,
)
from policy.connectors.registry import TYPES, ConnectorType, run_sql, test_connection
from policy.connectors.sql import ParsedSql, SqlRefused, parse_sql

__all__ = [
    "TYPES",
    "ConnectionSettings",
    "ConnectorError",
    "ConnectorType",
    "ErrorCode",
    "ParsedSql",
    "QueryResult",
    "SqlRefused",
    "parse_sql",
    "run_sql",
    "test_connection",
]
