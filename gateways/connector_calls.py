"""An agent's connector tool: one SQL statement, parsed, decided table by table, then run;
or one object-store call (objects.list / get / put), decided for its object, then run.

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

An object call follows the same steps: the arguments name one object
(`policy.connectors.objects.ObjectCall`: keys that a store or client could read as another
object are refused), the connector's own bounds are checked (read-only, its buckets, a put
over `max_bytes`), the sidecar decides it (`Run.authorize_object`: the object, and for a
put the content's hash, which a hold's grant binds), the credential is read, the call runs
and a get is cut at `max_bytes`, a list at `max_objects`, saying so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policy.connectors import ConnectionSettings, ConnectorError, SqlRefused, run_sql
from policy.connectors.objects import ObjectCall, ObjectRefused, ObjectStoreSettings
from policy.connectors.registry import Settings, parse_for, run_object_call
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
_FOR_THE_MODEL = frozenset(
    {
        "query_failed",
        "timeout",
        "read_only",
        "not_found",
        "no_bucket",
        "bucket_not_served",
        "too_large",
        "request_failed",
    }
)


def object_arguments(operations: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "operation": {"type": "string", "enum": list(operations)},
            "bucket": {"type": "string", "description": "the bucket (Azure: container)"},
            "key": {"type": "string", "description": "the object's key (objects.get, .put)"},
            "prefix": {"type": "string", "description": "keys starting with it (objects.list)"},
            "content": {"type": "string", "description": "objects.put: the text to write"},
            "content_base64": {"type": "string", "description": "objects.put: bytes, base64"},
            "content_type": {"type": "string", "description": "objects.put: a media type"},
        },
        "required": ["operation", "bucket"],
    }


def tool_spec(tool: ConnectorTool, settings: Settings | None) -> ToolSpec:
    if tool.objects:
        limits = (
            f" Reads are cut at {settings.max_bytes} bytes, listings at {settings.max_objects}."
            if isinstance(settings, ObjectStoreSettings)
            else ""
        )
        description = tool.description or (
            f"List, read or write objects on the connector {tool.connector} "
            f"({', '.join(tool.operations)}).{limits}"
        )
        return ToolSpec(tool.name, description, object_arguments(tool.operations))
    if not isinstance(settings, ConnectionSettings):
        settings = None
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
    settings = deployments.connectors.get(tool.connector)
    if settings is None:
        raise ToolError(
            f"connector {tool.connector!r} is not in this gateway's bundle (create it with "
            "POST /api/v1/connectors; the next bundle carries it)",
            {"connector": tool.connector},
        )
    if tool.objects != isinstance(settings, ObjectStoreSettings):
        raise ToolError(
            f"connector {tool.connector} is of type {settings.type}, which does not serve "
            f"{', '.join(tool.operations)}",
            {"connector": tool.connector},
        )
    if isinstance(settings, ObjectStoreSettings):
        return await _object_call(
            tool, settings, arguments, caller=caller, run=run, secrets=secrets, guard=guard
        )
    sql = arguments.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        return 'error: the arguments need {"sql": "<one SQL statement>"}'
    try:
        parsed = parse_for(settings, sql)
    except SqlRefused as refused:
        return f"error: the statement was refused: {refused.reason}"
    if parsed.operation == "write" and settings.read_only:
        return f"error: connector {tool.connector} is read-only; {parsed.statement} writes"
    for operation, table in parsed.checks():  # INSERT INTO t SELECT … FROM u: write t, read u
        await run.authorize_connector(caller, tool.connector, operation, table, sql)
    password = await _credential(tool, secrets)
    try:
        result = await run_sql(settings, password, guard, sql, parsed)
    except ConnectorError as error:
        return _failed(tool, error)
    return json.dumps(result.to_dict(), ensure_ascii=False)


async def _object_call(
    tool: ConnectorTool,
    settings: ObjectStoreSettings,
    arguments: Mapping[str, Any],
    *,
    caller: str,
    run: Run,
    secrets: SecretResolver,
    guard: OutboundGuard,
) -> str:
    operation = arguments.get("operation")
    if operation not in tool.operations:
        return f"error: operation must be one of {', '.join(tool.operations)}"
    try:
        call = ObjectCall.parse(str(operation), arguments)
    except ObjectRefused as refused:
        return f"error: the call was refused: {refused.reason}"
    if call.action == "write" and settings.read_only:
        return f"error: connector {tool.connector} is read-only; {call.operation} writes"
    if settings.buckets and call.bucket not in settings.buckets:
        return f"error: bucket {call.bucket} is not one connector {tool.connector} serves"
    if call.content is not None and len(call.content) > settings.max_bytes:
        return f"error: the content is over max_bytes={settings.max_bytes}"
    await run.authorize_object(
        caller, tool.connector, call.action, call.operation, call.check_body()
    )
    secret = await _credential(tool, secrets)
    try:
        result = await run_object_call(settings, secret, guard, call)
    except ConnectorError as error:
        return _failed(tool, error)
    return json.dumps(result.to_dict(), ensure_ascii=False)


async def _credential(tool: ConnectorTool, secrets: SecretResolver) -> str:
    try:
        return await asyncio.to_thread(secrets.connector_password, tool.connector)
    except ProviderError as error:
        raise ToolError(error.message, {"connector": tool.connector}) from None


def _failed(tool: ConnectorTool, error: ConnectorError) -> str:
    """What the model can act on goes back to it; a connector it cannot use fails the call."""
    if error.code in _FOR_THE_MODEL:
        return f"error: {error.code}: {error.message}"
    raise ToolError(
        f"connector {tool.connector}: {error.message}",
        {"connector": tool.connector, "code": error.code},
    )
