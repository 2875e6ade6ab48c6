"""An agent's or pipeline's input and output against its declared JSON schemas.

`input_text` checks a caller's input against `input_schema` (an `InvalidInput` naming the
field) and gives the text a model reads; `parse_output` turns a model's answer into the
value `output_schema` asks for (a `ProviderError` when the model answered something else).
`tool_schema` / `tool_arguments_to_input` are an agent's shape as a tool, for MCP clients
and for other agents: an object input is its own arguments, anything else is wrapped as
`{"input": …}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema
from policy.workloads import AgentConfig

from gateways.errors import InvalidInput, ProviderError


def wraps_input(agent: AgentConfig | None) -> bool:
    """Agents whose input is not a JSON object take `{"input": …}` as MCP/tool arguments."""
    return agent is None or not is_object_schema(agent.input_schema)


def is_object_schema(schema: Mapping[str, Any] | None) -> bool:
    return schema is not None and schema.get("type") == "object"


def tool_schema(agent: AgentConfig | None) -> Mapping[str, Any]:
    """The JSON schema of an agent's arguments as an MCP or model tool: its input_schema when
    that is an object, else `{"input": <its input>}`."""
    schema = agent.input_schema if agent is not None else None
    if schema is not None and is_object_schema(schema):
        return schema
    inner = dict(schema) if schema else {"type": "string"}
    return {"type": "object", "properties": {"input": inner}, "required": ["input"]}


def tool_arguments_to_input(agent: AgentConfig, arguments: Mapping[str, Any]) -> Any:
    """An agent's input from the arguments of a tool call made to it (`tool_schema`'s shape)."""
    if wraps_input(agent):
        if "input" not in arguments:
            raise InvalidInput("arguments need an 'input' field")
        return arguments["input"]
    return dict(arguments)


def input_text(schema: Mapping[str, Any] | None, value: Any, what: str) -> str:
    """`value` checked against `schema` (422 naming the field), as the text a model reads."""
    if value is None:
        raise InvalidInput(f"{what} needs an input")
    if schema is not None:
        try:
            jsonschema.validate(value, dict(schema))
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise InvalidInput(
                f"input does not match the input_schema of {what}: {exc.message}",
                {"field": "input" + (f"/{where}" if where else "")},
            ) from None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_output(schema: Mapping[str, Any] | None, text: str, what: str) -> Any:
    """The answer as text, or as JSON when the output_schema asks for structured output."""
    if schema is None or schema.get("type") == "string":
        value: Any = text
    else:
        try:
            value = json.loads(text)
        except ValueError:
            raise ProviderError(
                f"{what} answered text that is not the JSON its output_schema wants"
            ) from None
    if schema is not None:
        try:
            jsonschema.validate(value, dict(schema))
        except jsonschema.ValidationError as exc:
            raise ProviderError(
                f"{what} answered output that does not match its output_schema: {exc.message}"
            ) from None
    return value
