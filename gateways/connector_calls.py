"""An agent's connector tool: one SQL statement, parsed, decided table by table, then run.

Order, each step failing closed:
1. the statement is parsed in the connector's dialect (`policy.connectors.sql`): what it
   does (read/write) and every table; a refusal goes back to the model with its reason;
2. a write on a read-only connector is refused before anything is asked;
3. the sidecar decides each table as the original caller (`Run.authorize_connector`,
   gateways/nested.py), `write` for the tables the statement writes and `read` for those
   it only reads: a deny or a hold fails the whole call with 403;
4. the password is read now, from the secret store the control plane wrote
   (`SecretResolver.connector_password`), never from the bundle;
5. the statement runs through the outbound guard, in a read-only session for reads, and the
   result is cut at the connector's `max_rows` / `max_bytes`, saying so.

Errors the model can act on (SQL the database refused, a timeout, read-only) go back to it
as the tool's answer; a connector it cannot reach or log in to fails the call (`tool_error`).
No message carries the password: drivers' errors are re-worded by `policy.connectors`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policy.connectors import ConnectionSettings, ConnectorError, SqlRefused, run_sql
from policy.connectors.registry import parse_for
from policy.net.outbound import OutboundGuard
from policy.workloads import ConnectorTool

from gateways.errors import ProviderError, ToolError
from gateways.providers.base import ToolSpec
from gateways.providers.secrets import SecretResolver

if TYPE_CHECKING:
    from gateways.deployments import Deployments
    from gateways.executor import Run

SQL_ARGUMENTS: Mapping[str, Any] = {
    "type": "object",
    "properties": {"sql": {"type": "string", "description": "exactly one SQL statement"}},
    "required": ["sql"],
}
_FOR_THE_MODEL = frozenset({"query_failed", "timeout", "read_only"})


def tool_spec(tool: ConnectorTool, settings: ConnectionSettings | None) -> ToolSpec:
    kind = settings.type if settings else "database"
    access = "read-only" if settings is None or settings.read_only else "read-write"
    description = tool.description or (
        f"Run one SQL statement on the {kind} connector {tool.connector} ({access}). "
        f"Results are cut at {settings.max_rows if settings else 'the connector'}'s row limit."
    )
    return ToolSpec(tool.name, description, SQL_ARGUMENTS)


async def call(
    tool: ConnectorTool,
    arguments: Mapping[str, Any],
    *,
    caller: str,
    deployments: Deployments,
    run: Run,
    secrets: SecretResolver,
    guard: OutboundGuard,
) -> str:
    sql = arguments.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        return 'error: the arguments need {"sql": "<one SQL statement>"}'
    settings = deployments.connectors.get(tool.connector)
    if settings is None:
        raise ToolError(
            f"connector {tool.connector!r} is not in this gateway's bundle (create it with "
            "POST /api/v1/connectors; the next bundle carries it)",
            {"connector": tool.connector},
        )
    try:
        parsed = parse_for(settings, sql)
    except SqlRefused as refused:
        return f"error: the statement was refused: {refused.reason}"
    if parsed.operation == "write" and settings.read_only:
        return f"error: connector {tool.connector} is read-only; {parsed.statement} writes"
    for operation, table in parsed.checks():  # INSERT INTO t SELECT … FROM u: write t, read u
        await run.authorize_connector(caller, tool.connector, operation, table, sql)
    try:
        password = await asyncio.to_thread(secrets.connector_password, tool.connector)
    except ProviderError as error:
        raise ToolError(error.message, {"connector": tool.connector}) from None
    try:
        result = await run_sql(settings, password, guard, sql, parsed)
    except ConnectorError as error:
        if error.code in _FOR_THE_MODEL:
            return f"error: {error.code}: {error.message}"
        raise ToolError(
            f"connector {tool.connector}: {error.message}",
            {"connector": tool.connector, "code": error.code},
        ) from None
    return json.dumps(result.to_dict(), ensure_ascii=False)
