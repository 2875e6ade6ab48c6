"""`POST /mcp`: the deployed agents as MCP tools, over the official SDK's Streamable HTTP
transport (stateless, JSON responses).

Before the SDK sees a message, `McpEndpoint` reads the JSON-RPC body, works out what the
sidecar authorized it as (the same mapping as the sidecar's: `tools/call` → `invoke`
`agent:<tool>`; `initialize`, `server/discover`, `ping` and notifications → `connect`
`mcp:server`; `tools/list` and the other lists → `list` `mcp:server`) and verifies the
`x-kaizen-decision` header against it. Bodies that are not JSON-RPC get a JSON-RPC error.

`tools/list` shows only the agents the caller may invoke: for each deployed agent the
gateway asks the sidecar's HTTP authz (`POST /authz`, the caller's Authorization,
`X-Original-Method: POST`, `X-Original-URI: /mcp`, and the body of a `tools/call` of that
tool), and then settles any reservation that check made with zero use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from policy.runtime import tracing
from starlette.types import Receive, Scope, Send

from gateways.agent_io import tool_arguments_to_input, tool_schema
from gateways.auth import Decision, DecisionVerifier
from gateways.errors import GatewayError, Unauthenticated
from gateways.nested import NESTED_APPROVAL_HEADER

if TYPE_CHECKING:
    from gateways.state import GatewayState

log = logging.getLogger(__name__)

MCP_SERVER_RESOURCE = "mcp:server"
MAX_BODY_BYTES = 4 * 1024 * 1024
_SESSION_ACTIONS = {
    "initialize": "connect",
    "server/discover": "connect",
    "ping": "connect",
    "tools/list": "list",
    "resources/list": "list",
    "resources/templates/list": "list",
    "prompts/list": "list",
}
STATE_KEY = "kaizen_decision"


def expected_authorization(message: dict[str, Any]) -> tuple[str, str] | None:
    """(action, resource) the sidecar signs for this message; None if it authorizes none."""
    method = message.get("method")
    if not isinstance(method, str):
        return None
    if method == "tools/call":
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        return ("invoke", f"agent:{name}") if isinstance(name, str) and name else None
    if method.startswith("notifications/"):
        return "connect", MCP_SERVER_RESOURCE
    action = _SESSION_ACTIONS.get(method)
    return (action, MCP_SERVER_RESOURCE) if action else None


def build_server(state: GatewayState) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        deployments = state.deployments()
        authorization = _header(ctx, "authorization")
        names = list(deployments.agents)
        allowed = await asyncio.gather(*(state.may_invoke(authorization, n) for n in names))
        tools = [
            types.Tool(
                name=name,
                description=deployments.agents[name].description or f"Agent {name}",
                input_schema=dict(tool_schema(deployments.agents[name])),
            )
            for name, ok in zip(names, allowed, strict=True)
            if ok
        ]
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        decision: Decision | None = _scope(ctx).get("state", {}).get(STATE_KEY)
        if decision is None or decision.resource != f"agent:{params.name}":
            return _error_result("not authorized for this tool")  # unreachable past McpEndpoint
        try:
            deployments = state.deployments()
            agent = deployments.agent(params.name)
            value = tool_arguments_to_input(agent, params.arguments or {})
            output = await state.run_agent(
                deployments,
                params.name,
                value,
                decision,
                "mcp",
                _header(ctx, "authorization"),
                _header(ctx, NESTED_APPROVAL_HEADER),
            )
        except GatewayError as exc:
            return _gateway_error(exc)
        if isinstance(output, str):
            return types.CallToolResult(content=[types.TextContent(text=output)])
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(output, ensure_ascii=False))],
            structured_content=output if isinstance(output, dict) else {"result": output},
        )

    return Server(
        "kaizen-studio-gateway",
        version="0.1.0",
        instructions="Agents deployed to this Kaizen Studio gateway, one tool per agent.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def session_manager(server: Server[Any]) -> StreamableHTTPSessionManager:
    return StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, max_request_body_size=MAX_BODY_BYTES
    )


def _request_header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def allowed_origins(setting: str) -> frozenset[str]:
    """`KAIZEN_GATEWAY_MCP_ALLOWED_ORIGINS` (comma-separated `scheme://host[:port]`) as the
    endpoint compares them: lowercase, no trailing slash."""
    return frozenset(o.strip().rstrip("/").lower() for o in setting.split(",") if o.strip())


class McpEndpoint:
    """ASGI app in front of the SDK transport: JSON-RPC shape + decision header checks."""

    def __init__(
        self,
        manager: StreamableHTTPSessionManager,
        verifier: DecisionVerifier,
        organization: Callable[[], str | None],
        allowed_origins: frozenset[str] = frozenset(),
    ) -> None:
        self._manager = manager
        self._verifier = verifier
        self._organization = organization
        self._allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Streamable HTTP: servers MUST validate Origin (DNS rebinding). No Origin is a
        # non-browser client; a browser's must be one the operator allowed.
        origin = _request_header(scope, b"origin")
        if origin is not None and origin.rstrip("/").lower() not in self._allowed_origins:
            message = (
                f"Origin {origin[:100]} may not call this MCP endpoint "
                "(KAIZEN_GATEWAY_MCP_ALLOWED_ORIGINS)"
            )
            await _send_json(send, 403, {"error": {"code": "forbidden", "message": message}})
            return
        if scope["method"] != "POST":
            await _send_json(
                send,
                405,
                {"error": {"code": "method_not_allowed", "message": "POST only (stateless MCP)"}},
                [(b"allow", b"POST")],
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        header = headers.get("x-kaizen-decision")
        if not header:
            await _unauthenticated(
                send, "missing x-kaizen-decision: call the gateway through its proxy and sidecar"
            )
            return
        body = await _read_body(receive)
        if body is None:
            await _send_json(send, 413, _rpc_error(None, -32600, "request body too large"))
            return
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            await _send_json(send, 400, _rpc_error(None, -32700, "Parse error: body is not JSON"))
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            what = "batches are not supported" if isinstance(message, list) else "not JSON-RPC 2.0"
            await _send_json(send, 400, _rpc_error(None, -32600, f"Invalid Request: {what}"))
            return
        request_id = message.get("id") if isinstance(message.get("id"), str | int) else None
        expected = expected_authorization(message)
        if expected is None:
            method = message.get("method")
            if not isinstance(method, str):
                await _send_json(
                    send, 400, _rpc_error(request_id, -32600, "Invalid Request: no method")
                )
            else:
                await _send_json(
                    send, 200, _rpc_error(request_id, -32601, f"Method not found: {method[:64]}")
                )
            return
        try:
            decision = self._verifier.verify(
                header,
                *expected,
                self._organization(),
                method=scope["method"],
                path=scope["path"],
                body=body,
            )
        except Unauthenticated as exc:
            await _unauthenticated(send, exc.message)
            return
        state = dict(scope.get("state") or {})
        state[STATE_KEY] = decision
        await self._manager.handle_request({**scope, "state": state}, _replay(body, receive), send)


def _header(ctx: Any, name: str) -> str | None:
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    return headers.get(name) if headers is not None else None


def _scope(ctx: Any) -> dict[str, Any]:
    request = getattr(ctx, "request", None)
    scope = getattr(request, "scope", None)
    return scope if isinstance(scope, dict) else {}


def _gateway_error(exc: GatewayError) -> types.CallToolResult:
    """A failed call as a tool error; a held connector call says how to retry it, and its
    details (`approval_request_id`, the connector and object) are the structured content."""
    text = f"{exc.code}: {exc.message}"
    details = exc.details if isinstance(exc.details, dict) else {}
    request_id = details.get("approval_request_id")
    if request_id:
        text += (
            f" (approval request {request_id}: once approved, call again with its grant in "
            f"the {NESTED_APPROVAL_HEADER} header)"
        )
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={
            "error": {"code": exc.code, "message": exc.message, "details": details}
        },
        is_error=True,
    )


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _rpc_error(request_id: str | int | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            break
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body we already read, then the real channel (for the client's disconnect)."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _unauthenticated(send: Send, message: str) -> None:
    await _send_json(
        send,
        401,
        {"error": {"code": "unauthenticated", "message": message}},
        [
            (
                b"www-authenticate",
                b'Bearer resource_metadata="/.well-known/oauth-protected-resource"',
            )
        ],
    )


async def _send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


MayInvoke = Callable[[str | None, str], Awaitable[bool]]


async def ask_sidecar(
    client: httpx.AsyncClient,
    sidecar_url: str,
    authorization: str | None,
    agent: str,
    gateway_token: str,
) -> str | None:
    """The decision id if the sidecar allows this caller a tools/call of `agent`, else None."""
    if not authorization:
        return None
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "tools/call",
            "params": {"name": agent, "arguments": {}},
        }
    )
    try:
        response = await client.post(
            sidecar_url.rstrip("/") + "/authz",
            content=body,
            headers=tracing.inject(
                {
                    "authorization": authorization,
                    "x-original-method": "POST",
                    "x-original-uri": "/mcp",
                    "content-type": "application/json",
                    # The sidecar believes X-Original-* only from its proxy or the gateway.
                    "x-kaizen-gateway-token": gateway_token,
                }
            ),
            timeout=5.0,
        )
    except httpx.HTTPError as exc:
        log.warning("sidecar unreachable for tools/list (%s): hiding %s", type(exc).__name__, agent)
        return None
    if response.status_code != 200:
        return None
    return response.headers.get("x-kaizen-decision-id") or ""
