"""From an HTTP request (as Envoy or nginx describes it) to what the decision input needs.

Only the gateway's routes (CONTRACTS.md "Gateway routes") map to an action and a
resource; anything else is refused with a reason, so a new gateway route is denied until
it is mapped here on purpose.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_AGENT_INVOKE = re.compile(rf"/v1/agents/({NAME})/invoke")
_PIPELINE_RUN = re.compile(rf"/v1/pipelines/({NAME})/run")
# A connector call the gateway asks about (never a gateway route a caller reaches): the
# operation and the one object it touches, e.g. /v1/connectors/warehouse/read/table:public.orders
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_CONNECTOR_CALL = re.compile(
    rf"/v1/connectors/({NAME})/(read|write)(?:/table:({_IDENTIFIER})\.({_IDENTIFIER}))?"
)
# An object-store call: its operation in the path, the object in the body (ADR 0014):
# {"bucket", "key"} (a list: {"bucket", "prefix"}; a put also "bytes" and "sha256").
_OBJECT_CALL = re.compile(rf"/v1/connectors/({NAME})/(read|write)/objects\.(list|get|put)")
_OBJECT_ACTION = {"list": "read", "get": "read", "put": "write"}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_KEY_BYTES = 1024
_TOOL_NAME = re.compile(NAME)
MCP_PATH = "/mcp"
MCP_SERVER_RESOURCE = "mcp:server"
# MCP methods that open, keep or describe a session; they need `connect`/`list` on mcp:server.
_MCP_SESSION_ACTIONS = {
    "initialize": "connect",
    "server/discover": "connect",  # the official SDK (mcp 2.x) opens with it
    "ping": "connect",
    "tools/list": "list",
    "resources/list": "list",
    "resources/templates/list": "list",
    "prompts/list": "list",
}


class MappingError(Exception):
    """The request is not one the sidecar knows how to authorize; the message says why."""


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class HttpFacts:
    """The parts of the original request that matter; header names lowercase."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    source_ip: str | None = None
    body_truncated: bool = False
    # False when the proxy cannot show the body (nginx auth_request): an empty `body` then
    # says nothing about the request's, and nothing may be bound to its hash.
    body_seen: bool = True

    def body_sha256(self) -> str | None:
        """SHA-256 hex of the whole original body, or None when the sidecar did not see it."""
        if not self.body_seen or self.body_truncated:
            return None
        return hashlib.sha256(self.body).hexdigest()

    # Set when the request may not be authorized at all (an untrusted /authz peer naming
    # an original request); map_request denies with it.
    refusal: str | None = None


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class MappedRequest:
    action: str
    resource_type: str
    resource_id: str
    channel: str
    tool: Mapping[str, Any] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    body_sha256: str | None = None  # `/invoke` and `/run`: what approval grants bind
    # The channel the route itself is (api for /v1/…, mcp for /mcp). `channel` differs only
    # by a caller's claim, which may narrow what is allowed, never widen it: the authorizer
    # keeps the claim only when the route's own channel is allowed (channel_of).
    route_channel: str | None = None

    @property
    def narrowing(self) -> bool:
        return self.route_channel is not None and self.route_channel != self.channel


# Channels a caller of an /v1/ route may claim in X-Kaizen-Channel (the CLI says cli; the
# gateway, asking about a nested call of an MCP call, says mcp).
_CLAIMABLE = frozenset({"cli", "mcp"})


def claimed_channel(headers: Mapping[str, str]) -> str:
    """The channel an /v1/ request claims: `cli`/`mcp` from X-Kaizen-Channel, else `api`.

    A claim is the caller's word, so it is never trusted to widen: see MappedRequest."""
    claim = headers.get("x-kaizen-channel", "").strip().lower()
    return claim if claim in _CLAIMABLE else "api"


def map_request(facts: HttpFacts, agents: Mapping[str, Any] | None = None) -> MappedRequest:
    """The action, resource, channel and tool of a gateway call; MappingError otherwise."""
    if facts.refusal is not None:
        raise MappingError(facts.refusal)
    path = facts.path.split("?", 1)[0]
    method = facts.method.upper()
    if match := _AGENT_INVOKE.fullmatch(path):
        _require_post(method, path)
        return MappedRequest(
            "invoke",
            "agent",
            f"agent:{match[1]}",
            claimed_channel(facts.headers),
            body_sha256=facts.body_sha256(),
            route_channel="api",
        )
    if match := _PIPELINE_RUN.fullmatch(path):
        _require_post(method, path)
        return MappedRequest(
            "run",
            "pipeline",
            f"pipeline:{match[1]}",
            claimed_channel(facts.headers),
            body_sha256=facts.body_sha256(),
            route_channel="api",
        )
    if match := _CONNECTOR_CALL.fullmatch(path):
        _require_post(method, path)
        obj = f"table:{match[3]}.{match[4]}" if match[3] else None
        return MappedRequest(
            match[2],
            "connector",
            f"connector:{match[1]}",
            claimed_channel(facts.headers),
            attributes={"operation": "sql.query", "object": obj, "sql": _statement(facts)},
            body_sha256=facts.body_sha256(),  # the statement an approval grant binds
            route_channel="api",
        )
    if match := _OBJECT_CALL.fullmatch(path):
        _require_post(method, path)
        if _OBJECT_ACTION[match[3]] != match[2]:
            raise MappingError(
                f"objects.{match[3]} is a {_OBJECT_ACTION[match[3]]}, not a {match[2]}"
            )
        return MappedRequest(
            match[2],
            "connector",
            f"connector:{match[1]}",
            claimed_channel(facts.headers),
            attributes=_object_attributes(facts, match[3]),
            body_sha256=facts.body_sha256(),  # the object (and a put's content) a grant binds
            route_channel="api",
        )
    if path == MCP_PATH:
        _require_post(method, path)
        if facts.body_truncated:
            raise MappingError("MCP request body is too large to authorize")
        if not facts.body:
            raise MappingError(
                "MCP request has no JSON-RPC body to authorize (the proxy must send it: "
                "Envoy with_request_body; nginx auth_request cannot)"
            )
        return map_mcp(facts.body, agents or {})
    raise MappingError(f"no gateway route {method} {path[:200]!r} is authorized by the sidecar")


MAX_STATEMENT_CHARS = 4000


def _statement(facts: HttpFacts) -> str | None:
    """The SQL the gateway sends as `{"sql": …}` with a connector check (for the decision
    log and approvers; cut at MAX_STATEMENT_CHARS), or None."""
    if not facts.body or facts.body_truncated:
        return None
    try:
        body = json.loads(facts.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    sql = body.get("sql") if isinstance(body, dict) else None
    return sql[:MAX_STATEMENT_CHARS] if isinstance(sql, str) else None


def _object_attributes(facts: HttpFacts, operation: str) -> dict[str, Any]:
    """`operation`, `object` (`<bucket>/<key>`; a list `<bucket>/<prefix>`), `bucket` and
    `key` or `prefix` (a put also `bytes`, `sha256`) from the check's body; anything else
    is not authorized (MappingError)."""
    if facts.body_truncated or not facts.body:
        raise MappingError("an object call's check needs its object in the body")
    try:
        body = json.loads(facts.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MappingError("an object call's check body is not JSON") from None
    name = "prefix" if operation == "list" else "key"
    expected = {"bucket", name} | ({"bytes", "sha256"} if operation == "put" else set())
    if not isinstance(body, dict) or set(body) != expected:
        raise MappingError(f"an objects.{operation} check body has exactly {sorted(expected)}")
    bucket, key = body["bucket"], body[name]
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
        raise MappingError("an object call names no valid bucket")
    valid_key = isinstance(key, str) and (bool(key) or operation == "list")
    if not valid_key or len(key.encode()) > MAX_KEY_BYTES or _CONTROL.search(key):
        raise MappingError(f"an object call names no valid {name}")
    out: dict[str, Any] = {
        "operation": f"objects.{operation}",
        "object": f"{bucket}/{key}",
        "bucket": bucket,
        name: key,
    }
    if operation == "put":
        size, digest = body["bytes"], body["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MappingError("an objects.put check names no valid bytes")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise MappingError("an objects.put check names no valid sha256")
        out.update(bytes=size, sha256=digest)
    return out


def _require_post(method: str, path: str) -> None:
    if method != "POST":
        raise MappingError(f"method {method[:16]!r} is not allowed on {path}; use POST")


def map_mcp(body: bytes, agents: Mapping[str, Any]) -> MappedRequest:
    """A JSON-RPC request to the gateway's MCP endpoint (Streamable HTTP)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MappingError("MCP request body is not valid JSON") from None
    if isinstance(message, list):
        raise MappingError("JSON-RPC batches are not supported; send one MCP message per request")
    if not isinstance(message, dict):
        raise MappingError("MCP request body must be a JSON-RPC object")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise MappingError("MCP request has no JSON-RPC method")
    if method == "tools/call":
        return _tool_call(message.get("params"), agents)
    if method.startswith("notifications/"):
        return MappedRequest("connect", "mcp", MCP_SERVER_RESOURCE, "mcp")
    if action := _MCP_SESSION_ACTIONS.get(method):
        return MappedRequest(action, "mcp", MCP_SERVER_RESOURCE, "mcp")
    raise MappingError(f"MCP method {method[:64]!r} is not supported by this gateway")


def _tool_call(params: object, agents: Mapping[str, Any]) -> MappedRequest:
    if not isinstance(params, dict):
        raise MappingError("MCP tools/call needs params {name, arguments}")
    name = params.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise MappingError("MCP tools/call needs a tool name of letters, digits, '.', '_', '-'")
    arguments = params.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise MappingError("MCP tools/call arguments must be a JSON object")
    agent = tool_agent(name, agents)
    return MappedRequest(
        "invoke", "agent", f"agent:{agent}", "mcp", {"name": name, "arguments": arguments}
    )


def tool_agent(tool: str, agents: Mapping[str, Any]) -> str:
    """The agent serving an MCP tool: data.json `agents.<agent>.tools` lists it, else the tool."""
    for agent, config in agents.items():
        if isinstance(config, Mapping):
            tools = config.get("tools")
            if isinstance(tools, list) and tool in tools:
                return str(agent)
    return tool
