"""`kind: Agent` specs: the model, the tools (another agent, an HTTP endpoint, an MCP tool)."""

from __future__ import annotations

import re
from typing import Any

from policy.documents.fields import FieldReader
from policy.documents.source import Path
from policy.workloads.config import (
    CONNECTOR_OPERATIONS,
    PROVIDERS,
    AgentConfig,
    AgentTool,
    ConnectorTool,
    HttpTool,
    McpTool,
    ModelConfig,
    Tool,
)
from policy.workloads.values import (
    read_budget,
    read_limits,
    read_number,
    read_optional_string,
    read_schema,
)

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI and Anthropic accept
TOOL_NAME_HINT = "letters, digits, '_' or '-', at most 64"
URL = re.compile(r"https?://[^\s/$.?#][^\s]*")
URL_HINT = "an absolute http:// or https:// URL"

_AGENT_FIELDS = (
    "description",
    "system_prompt",
    "tools",
    "input_schema",
    "output_schema",
    "cost_estimate_usd",
    "limits",
    "budget",
)


def parse_agent(
    reader: FieldReader, value: object, name: str, description: str | None
) -> AgentConfig | None:
    spec = reader.mapping(value, ("spec",), required=("model",), optional=_AGENT_FIELDS)
    if spec is None:
        return None
    before = len(reader.details)
    model = _model(reader, spec.get("model"), ("spec", "model"))
    system_prompt = read_optional_string(reader, spec, ("spec", "system_prompt")) or ""
    description = read_optional_string(reader, spec, ("spec", "description")) or description
    tools = _tools(reader, spec.get("tools", []), ("spec", "tools"))
    cost = 0.0
    if "cost_estimate_usd" in spec:
        cost = read_number(reader, spec["cost_estimate_usd"], ("spec", "cost_estimate_usd")) or 0.0
    agent = AgentConfig(
        name=name,
        description=description,
        model=model or ModelConfig("demo", "demo"),
        system_prompt=system_prompt,
        tools=tools,
        input_schema=read_schema(reader, spec, ("spec", "input_schema")),
        output_schema=read_schema(reader, spec, ("spec", "output_schema")),
        cost_estimate_usd=cost,
        limits=read_limits(reader, spec.get("limits"), ("spec", "limits")),
        budget=read_budget(reader, spec.get("budget"), ("spec", "budget"), priced=True),
    )
    return agent if model is not None and len(reader.details) == before else None


def _model(reader: FieldReader, value: object, path: Path) -> ModelConfig | None:
    raw = reader.mapping(
        value,
        path,
        required=("provider", "name"),
        optional=("parameters", "base_url", "api_key_secret"),
    )
    if raw is None:
        return None
    if "provider" not in raw or "name" not in raw:
        return None  # reported as missing by reader.mapping
    provider = reader.choice(raw.get("provider"), (*path, "provider"), PROVIDERS)
    model_name = reader.string(raw.get("name"), (*path, "name"))
    if model_name is not None and not model_name.strip():
        reader.error((*path, "name"), "must not be empty")
    parameters: dict[str, Any] = {}
    if "parameters" in raw:
        if isinstance(raw["parameters"], dict):
            parameters = dict(raw["parameters"])
        else:
            reader.error((*path, "parameters"), "expected a mapping")
        for reserved in ("model", "messages", "stream", "tools", "system"):
            if reserved in parameters:
                reader.error((*path, "parameters", reserved), "set by the gateway, not here")
    base_url = None
    if "base_url" in raw:
        base_url = reader.string(raw["base_url"], (*path, "base_url"), pattern=URL, hint=URL_HINT)
    secret = None
    if "api_key_secret" in raw:
        secret = reader.name(raw["api_key_secret"], (*path, "api_key_secret"))
    if provider is None or not model_name or not model_name.strip():
        return None
    return ModelConfig(provider, model_name, parameters, base_url, secret)


def _tools(reader: FieldReader, value: object, path: Path) -> tuple[Tool, ...]:
    items = reader.sequence(value, path) or []
    out: list[Tool] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        tool = _tool(reader, item, (*path, i))
        if tool is None:
            continue
        if tool.name in seen:
            reader.error(
                (*path, i), f"duplicate tool name {tool.name!r} (also item {seen[tool.name]})"
            )
            continue
        seen[tool.name] = i
        out.append(tool)
    return tuple(out)


def _tool(reader: FieldReader, value: object, path: Path) -> Tool | None:
    raw = reader.mapping(value, path, optional=("agent", "http", "mcp", "connector"))
    if raw is None:
        return None
    if len(raw) != 1:
        reader.error(
            path, "a tool is exactly one of {agent: …}, {http: …}, {mcp: …}, {connector: …}"
        )
        return None
    if "connector" in raw:
        return _connector_tool(reader, raw["connector"], (*path, "connector"))
    if "agent" in raw:
        agent = reader.name(raw["agent"], (*path, "agent"))
        return AgentTool(agent) if agent else None
    if "http" in raw:
        http_path = (*path, "http")
        spec = reader.mapping(
            raw["http"],
            http_path,
            required=("name", "url"),
            optional=("method", "input_schema", "description"),
        )
        if spec is None:
            return None
        before = len(reader.details)
        name = reader.string(
            spec.get("name"), (*http_path, "name"), pattern=TOOL_NAME, hint=TOOL_NAME_HINT
        )
        url = reader.string(spec.get("url"), (*http_path, "url"), pattern=URL, hint=URL_HINT)
        method = "POST"
        if "method" in spec:
            method = reader.choice(spec["method"], (*http_path, "method"), HTTP_METHODS) or "POST"
        schema = read_schema(reader, spec, (*http_path, "input_schema")) or {"type": "object"}
        description = read_optional_string(reader, spec, (*http_path, "description"))
        if len(reader.details) != before or name is None or url is None:
            return None
        return HttpTool(name, url, method, schema, description)
    mcp_path = (*path, "mcp")
    spec = reader.mapping(
        raw.get("mcp"), mcp_path, required=("server_url", "tool"), optional=("name",)
    )
    if spec is None:
        return None
    server = reader.string(
        spec.get("server_url"), (*mcp_path, "server_url"), pattern=URL, hint=URL_HINT
    )
    tool = reader.string(spec.get("tool"), (*mcp_path, "tool"))
    alias = None
    if "name" in spec:
        alias = reader.string(
            spec["name"], (*mcp_path, "name"), pattern=TOOL_NAME, hint=TOOL_NAME_HINT
        )
    elif tool is not None and not TOOL_NAME.fullmatch(tool):
        reader.error(
            (*mcp_path, "tool"), f"not a valid tool name for models; add name: ({TOOL_NAME_HINT})"
        )
        return None
    if server is None or tool is None:
        return None
    return McpTool(server, tool, alias)


CONNECTOR_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _connector_tool(reader: FieldReader, value: object, path: Path) -> ConnectorTool | None:
    spec = reader.mapping(
        value, path, required=("name", "operations"), optional=("tool_name", "description")
    )
    if spec is None:
        return None
    before = len(reader.details)
    name = reader.string(
        spec.get("name"),
        (*path, "name"),
        pattern=CONNECTOR_NAME,
        hint="a connector name: lowercase letters, digits, '_' or '-', at most 63",
    )
    operations: list[str] = []
    listed = (
        reader.sequence(spec["operations"], (*path, "operations")) if "operations" in spec else []
    )
    for i, item in enumerate(listed or []):
        operation = reader.choice(item, (*path, "operations", i), CONNECTOR_OPERATIONS)
        if operation is not None and operation not in operations:
            operations.append(operation)
    if "operations" in spec and not operations and len(reader.details) == before:
        reader.error((*path, "operations"), "name at least one operation")
    if "sql.query" in operations and len(operations) > 1:
        reader.error(
            (*path, "operations"),
            "sql.query and objects.* are different connector types: one tool names one",
        )
    alias = None
    if "tool_name" in spec:
        alias = reader.string(
            spec["tool_name"], (*path, "tool_name"), pattern=TOOL_NAME, hint=TOOL_NAME_HINT
        )
    description = read_optional_string(reader, spec, (*path, "description"))
    if len(reader.details) != before or name is None:
        return None
    tool = ConnectorTool(name, tuple(operations), alias, description)
    if not TOOL_NAME.fullmatch(tool.name):
        reader.error((*path, "name"), f"the tool name {tool.name!r} is too long; add tool_name")
        return None
    return tool
