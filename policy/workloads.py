"""Agent and pipeline configs (`kind: Agent` / `kind: Pipeline`): parse, validate, serialise.

Shared by the control plane (validate on create/update, put `to_dict()` into the bundle's
`data.json` `agents`/`pipelines`) and the gateway (load what the verified bundle deploys).
Errors are `PolicyValidationError` with `{file, document, field, line, column, message}`
details, exactly like policy documents. Unknown fields are errors.

```yaml
apiVersion: kaizen.studio/v1
kind: Agent
metadata: {name: support-bot, description: Answers support questions}
spec:
  model: {provider: openai, name: gpt-4o-mini, parameters: {temperature: 0.2}}
  system_prompt: You are a helpful support agent.
  tools:
    - agent: researcher                                   # another agent, called as a tool
    - http: {name: weather, url: "https://…", method: GET, input_schema: {type: object}}
    - mcp: {server_url: "https://…/mcp", tool: search}    # a tool of a remote MCP server
  input_schema: {type: string}
  output_schema: {type: string}
  cost_estimate_usd: 0.002
  limits: {max_steps: 8, timeout_seconds: 60, max_cost_usd: 0.5}
  budget: {max_cost_usd_per_call: 0.05, max_tokens: 4000}  # what every call reserves
```

`spec.budget` (agents and pipelines) is the server-side amount a call reserves against the
organisation's budgets, carried in the signed bundle: `max_cost_usd_per_call` (default:
`limits.max_cost_usd`) for `cost_usd` budgets, `max_tokens` (default
`DEFAULT_MAX_TOKENS_PER_CALL`) for `tokens` budgets. The gateway stops a run past either,
so they are true ceilings. An agent whose model is not in `policy.prices` declares
`price_per_1m_tokens: {input, output}`; otherwise it cannot be deployed.

A pipeline names its pattern and the agents each role is played by; see `PATTERNS` and
gateways/README.md for what each pattern does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from policy.errors import ErrorDetail, PolicyValidationError
from policy.fields import NAME, FieldReader
from policy.models import API_VERSION
from policy.source import Path, RawDocument, load_documents

__all__ = [
    "PATTERNS",
    "PROVIDERS",
    "AgentConfig",
    "AgentTool",
    "CallBudget",
    "HttpTool",
    "Limits",
    "McpTool",
    "ModelConfig",
    "PipelineConfig",
    "Workload",
    "check_references",
    "deployed_to",
    "parse_workload",
    "parse_workload_source",
]

WORKLOAD_KINDS = ("Agent", "Pipeline")
PROVIDERS = ("openai", "vllm", "ollama", "lmstudio", "anthropic", "demo")
Pattern = Literal[
    "sequential",
    "parallel",
    "router",
    "ensemble",
    "blackboard",
    "supervisor_worker",
    "consensus",
    "debate",
    "handoff",
]
# pattern → (required spec fields, optional spec fields) besides `pattern`, `limits`, schemas
PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sequential": (("agents",), ()),
    "parallel": (("agents",), ("aggregator",)),
    "router": (("router", "routes"), ("default",)),
    "ensemble": (("agents",), ("strategy", "aggregator")),
    "blackboard": (("agents", "controller"), ()),
    "supervisor_worker": (("supervisor", "workers"), ()),
    "consensus": (("agents",), ("threshold", "max_rounds")),
    "debate": (("debaters", "judge"), ("rounds",)),
    "handoff": (("agents", "entry"), ()),
}
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ENSEMBLE_STRATEGIES = ("majority", "aggregator")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI and Anthropic accept
TOOL_NAME_HINT = "letters, digits, '_' or '-', at most 64"
URL = re.compile(r"https?://[^\s/$.?#][^\s]*")
URL_HINT = "an absolute http:// or https:// URL"
MAX_TIMEOUT_SECONDS = 3600
MAX_STEPS = 1000
DEFAULT_MAX_TOKENS_PER_CALL = 100_000
MAX_TOKENS_PER_CALL = 100_000_000


@dataclass(frozen=True)
class Limits:
    """Every run stops with a clear error past any of these (the gateway enforces them)."""

    max_steps: int = 20
    timeout_seconds: float = 60.0
    max_cost_usd: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_steps": self.max_steps,
            "timeout_seconds": self.timeout_seconds,
            "max_cost_usd": self.max_cost_usd,
        }


@dataclass(frozen=True)
class CallBudget:
    """`spec.budget`: what one call may cost, reserved before it runs (None: the default)."""

    max_cost_usd_per_call: float | None = None
    max_tokens: int | None = None
    price_per_1m_tokens: tuple[float, float] | None = None  # agents only: (input, output)

    def __bool__(self) -> bool:
        return any(
            v is not None
            for v in (self.max_cost_usd_per_call, self.max_tokens, self.price_per_1m_tokens)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_cost_usd_per_call is not None:
            out["max_cost_usd_per_call"] = self.max_cost_usd_per_call
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.price_per_1m_tokens is not None:
            price_in, price_out = self.price_per_1m_tokens
            out["price_per_1m_tokens"] = {"input": price_in, "output": price_out}
        return out

    def cost_ceiling(self, limits: Limits) -> float:
        """USD one call may spend: the run stops past `limits.max_cost_usd` anyway."""
        if self.max_cost_usd_per_call is None:
            return limits.max_cost_usd
        return min(self.max_cost_usd_per_call, limits.max_cost_usd)

    def token_ceiling(self) -> int:
        return self.max_tokens if self.max_tokens is not None else DEFAULT_MAX_TOKENS_PER_CALL


@dataclass(frozen=True)
class ModelConfig:
    provider: str
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    base_url: str | None = None  # default per provider (OpenAI, local vLLM/Ollama/LM Studio)
    api_key_secret: str | None = None  # name the gateway's SecretResolver resolves

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "name": self.name}
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.base_url is not None:
            out["base_url"] = self.base_url
        if self.api_key_secret is not None:
            out["api_key_secret"] = self.api_key_secret
        return out


@dataclass(frozen=True)
class AgentTool:
    agent: str

    @property
    def name(self) -> str:
        return self.agent

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent}


@dataclass(frozen=True)
class HttpTool:
    name: str
    url: str
    method: str = "POST"
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "url": self.url,
            "method": self.method,
            "input_schema": dict(self.input_schema),
        }
        if self.description is not None:
            out["description"] = self.description
        return {"http": out}


@dataclass(frozen=True)
class McpTool:
    server_url: str
    tool: str
    alias: str | None = None  # the name the model sees, when `tool` clashes

    @property
    def name(self) -> str:
        return self.alias or self.tool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server_url": self.server_url, "tool": self.tool}
        if self.alias is not None:
            out["name"] = self.alias
        return {"mcp": out}


Tool = AgentTool | HttpTool | McpTool


@dataclass(frozen=True)
class AgentConfig:
    name: str
    model: ModelConfig
    system_prompt: str = ""
    description: str | None = None
    tools: tuple[Tool, ...] = ()
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    cost_estimate_usd: float = 0.0
    limits: Limits = field(default_factory=Limits)
    budget: CallBudget = field(default_factory=CallBudget)
    kind: Literal["Agent"] = "Agent"

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"model": self.model.to_dict(), "system_prompt": self.system_prompt}
        if self.tools:
            spec["tools"] = [tool.to_dict() for tool in self.tools]
        if self.input_schema is not None:
            spec["input_schema"] = dict(self.input_schema)
        if self.output_schema is not None:
            spec["output_schema"] = dict(self.output_schema)
        spec["cost_estimate_usd"] = self.cost_estimate_usd
        spec["limits"] = self.limits.to_dict()
        if self.budget:
            spec["budget"] = self.budget.to_dict()
        return _document("Agent", self.name, self.description, spec)

    def referenced_agents(self) -> tuple[str, ...]:
        return tuple(tool.agent for tool in self.tools if isinstance(tool, AgentTool))


@dataclass(frozen=True)
class PipelineConfig:
    """`roles` holds the pattern's fields as written: agent names, lists or route maps."""

    name: str
    pattern: Pattern
    roles: Mapping[str, Any]
    description: str | None = None
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    limits: Limits = field(default_factory=Limits)
    budget: CallBudget = field(default_factory=CallBudget)
    kind: Literal["Pipeline"] = "Pipeline"

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"pattern": self.pattern, **_copy(self.roles)}
        if self.input_schema is not None:
            spec["input_schema"] = dict(self.input_schema)
        if self.output_schema is not None:
            spec["output_schema"] = dict(self.output_schema)
        spec["limits"] = self.limits.to_dict()
        if self.budget:
            spec["budget"] = self.budget.to_dict()
        return _document("Pipeline", self.name, self.description, spec)

    def agent_names(self) -> tuple[str, ...]:
        """Every agent the pipeline may run, in the order its spec names them."""
        out: list[str] = []
        for key, value in self.roles.items():
            if key == "routes":
                out.extend(value.values())
            elif isinstance(value, list):
                out.extend(value)
            elif isinstance(value, str) and key != "strategy":
                out.append(value)
        return tuple(dict.fromkeys(out))

    def role(self, key: str) -> Any:
        return self.roles.get(key)


Workload = AgentConfig | PipelineConfig


def parse_workload_source(text: str, filename: str = "<source>") -> list[Workload]:
    """Every Agent/Pipeline document of a YAML or JSON source; all problems at once."""
    out: list[Workload] = []
    details: list[ErrorDetail] = []
    for raw in load_documents(text, filename):
        reader = FieldReader(raw)
        workload = _parse(reader)
        details.extend(reader.details)
        if workload is not None:
            out.append(workload)
    if details:
        raise PolicyValidationError(details)
    return out


def parse_workload(value: Mapping[str, Any], filename: str = "<request>") -> Workload:
    """One already-decoded document (an API body or a bundle entry); errors name the field."""
    raw = RawDocument(file=filename, index=0, body=dict(value), text="")
    reader = FieldReader(raw)
    workload = _parse(reader)
    if reader.details or workload is None:
        raise PolicyValidationError(
            reader.details or [_plain(filename, "not an Agent or Pipeline document")]
        )
    return workload


def deployed_to(
    entries: Mapping[str, Any], gateway_id: str | None, filename: str
) -> dict[str, Workload]:
    """Bundle `agents`/`pipelines` entries (`{name: {…to_dict()…, gateways: […]}}`) that
    name `gateway_id` (every entry when it is None), parsed and checked."""
    out: dict[str, Workload] = {}
    details: list[ErrorDetail] = []
    for name, entry in sorted(entries.items()):
        if not isinstance(entry, Mapping):
            details.append(_plain(filename, f"{name}: entry is not a mapping"))
            continue
        gateways = entry.get("gateways", [])
        if not isinstance(gateways, list):
            details.append(_plain(filename, f"{name}: gateways must be a list"))
            continue
        if gateway_id is not None and gateway_id not in gateways:
            continue
        document = {k: v for k, v in entry.items() if k != "gateways"}
        try:
            workload = parse_workload(document, f"{filename}:{name}")
        except PolicyValidationError as exc:
            details.extend(exc.details)
            continue
        if workload.name != name:
            details.append(_plain(filename, f"{name}: entry holds {workload.name!r}"))
            continue
        out[name] = workload
    if details:
        raise PolicyValidationError(details)
    return out


def check_references(
    agents: Mapping[str, AgentConfig], pipelines: Iterable[PipelineConfig]
) -> list[str]:
    """Names used but not defined (agent tools, pipeline roles); empty when all resolve."""
    problems: list[str] = []
    for agent in agents.values():
        for ref in agent.referenced_agents():
            if ref not in agents:
                problems.append(f"agent {agent.name}: tool agent {ref!r} is not deployed")
    for pipeline in pipelines:
        for ref in pipeline.agent_names():
            if ref not in agents:
                problems.append(f"pipeline {pipeline.name}: agent {ref!r} is not deployed")
    return problems


# --- parsing -------------------------------------------------------------------------


def _parse(reader: FieldReader) -> Workload | None:
    body = reader.mapping(
        reader.raw.body, (), required=("kind", "metadata", "spec"), optional=("apiVersion",)
    )
    if body is None:
        return None
    if "apiVersion" in body and body["apiVersion"] != API_VERSION:
        reader.error(
            ("apiVersion",), f"unsupported apiVersion {body['apiVersion']!r}; use {API_VERSION}"
        )
    kind = body.get("kind")
    if "kind" in body and kind not in WORKLOAD_KINDS:
        reader.error(("kind",), f"unknown kind {kind!r} (expected one of: Agent, Pipeline)")
        return None
    if "metadata" not in body or "spec" not in body or kind is None:
        return None
    metadata = reader.mapping(
        body["metadata"], ("metadata",), required=("name",), optional=("description",)
    )
    if metadata is None:
        return None
    name = reader.name(metadata.get("name"), ("metadata", "name"))
    description = _opt_string(reader, metadata, ("metadata", "description"))
    if kind == "Agent":
        agent = _agent(reader, body["spec"], name or "", description)
        return agent if name else None
    pipeline = _pipeline(reader, body["spec"], name or "", description)
    return pipeline if name else None


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


def _agent(
    reader: FieldReader, value: object, name: str, description: str | None
) -> AgentConfig | None:
    spec = reader.mapping(value, ("spec",), required=("model",), optional=_AGENT_FIELDS)
    if spec is None:
        return None
    before = len(reader.details)
    model = _model(reader, spec.get("model"), ("spec", "model"))
    system_prompt = _opt_string(reader, spec, ("spec", "system_prompt")) or ""
    description = _opt_string(reader, spec, ("spec", "description")) or description
    tools = _tools(reader, spec.get("tools", []), ("spec", "tools"))
    cost = 0.0
    if "cost_estimate_usd" in spec:
        cost = _number(reader, spec["cost_estimate_usd"], ("spec", "cost_estimate_usd")) or 0.0
    agent = AgentConfig(
        name=name,
        description=description,
        model=model or ModelConfig("demo", "demo"),
        system_prompt=system_prompt,
        tools=tools,
        input_schema=_schema(reader, spec, ("spec", "input_schema")),
        output_schema=_schema(reader, spec, ("spec", "output_schema")),
        cost_estimate_usd=cost,
        limits=_limits(reader, spec.get("limits"), ("spec", "limits")),
        budget=_budget(reader, spec.get("budget"), ("spec", "budget"), priced=True),
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
    raw = reader.mapping(value, path, optional=("agent", "http", "mcp"))
    if raw is None:
        return None
    if len(raw) != 1:
        reader.error(path, "a tool is exactly one of {agent: …}, {http: …}, {mcp: …}")
        return None
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
        schema = _schema(reader, spec, (*http_path, "input_schema")) or {"type": "object"}
        description = _opt_string(reader, spec, (*http_path, "description"))
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


def _pipeline(
    reader: FieldReader, value: object, name: str, description: str | None
) -> PipelineConfig | None:
    if not isinstance(value, dict):
        reader.mapping(value, ("spec",))
        return None
    pattern = reader.choice(value.get("pattern"), ("spec", "pattern"), tuple(PATTERNS))
    if pattern is None:
        if "pattern" not in value:
            reader.error(("spec",), "missing required field 'pattern'")
        return None
    required, optional = PATTERNS[pattern]
    common = ("pattern", "description", "input_schema", "output_schema", "limits", "budget")
    spec = reader.mapping(value, ("spec",), required=required, optional=(*optional, *common))
    if spec is None:
        return None
    before = len(reader.details)
    roles: dict[str, Any] = {}
    for key in (*required, *optional):
        if key not in spec:
            continue
        path = ("spec", key)
        role = _role(reader, pattern, key, spec[key], path)
        if role is not None:
            roles[key] = role
    _pattern_rules(reader, pattern, roles)
    pipeline = PipelineConfig(
        name=name,
        pattern=pattern,  # type: ignore[arg-type]  # checked against PATTERNS above
        roles=roles,
        description=_opt_string(reader, spec, ("spec", "description")) or description,
        input_schema=_schema(reader, spec, ("spec", "input_schema")),
        output_schema=_schema(reader, spec, ("spec", "output_schema")),
        limits=_limits(reader, spec.get("limits"), ("spec", "limits")),
        budget=_budget(reader, spec.get("budget"), ("spec", "budget"), priced=False),
    )
    return pipeline if len(reader.details) == before else None


def _role(reader: FieldReader, pattern: str, key: str, value: object, path: Path) -> Any:
    if key in ("agents", "workers", "debaters"):
        names = reader.strings(value, path, pattern=NAME, hint="an agent name")
        if isinstance(value, list) and not value:
            reader.error(path, "needs at least one agent")
        if len(set(names)) != len(names):
            reader.error(path, "names an agent twice")
        return list(names)
    if key == "routes":
        if not isinstance(value, dict):
            reader.error(path, "expected a mapping of route label to agent name")
            return None
        routes = value
        if not routes:
            reader.error(path, "needs at least one route")
        out = {}
        for label, agent in routes.items():
            name = reader.name(agent, (*path, label))
            if name is not None:
                out[label] = name
        return out
    if key == "strategy":
        return reader.choice(value, path, ENSEMBLE_STRATEGIES)
    if key == "threshold":
        number = reader.number(value, path, minimum=0.5)
        if number is not None and number > 1:
            reader.error(path, f"must be at most 1, got {number:g}")
            return None
        return number
    if key in ("max_rounds", "rounds"):
        return _int(reader, value, path, minimum=1, maximum=MAX_STEPS)
    return reader.name(value, path)  # router, default, aggregator, controller, supervisor, …


def _pattern_rules(reader: FieldReader, pattern: str, roles: dict[str, Any]) -> None:
    if pattern == "ensemble":
        strategy = roles.setdefault(
            "strategy", "aggregator" if "aggregator" in roles else "majority"
        )
        if strategy == "aggregator" and "aggregator" not in roles:
            reader.error(("spec",), "strategy aggregator needs an aggregator agent")
    if pattern == "debate" and len(roles.get("debaters", [])) < 2:
        reader.error(("spec", "debaters"), "a debate needs at least two debaters")
    if pattern == "handoff" and roles.get("entry") not in roles.get("agents", []):
        reader.error(("spec", "entry"), "entry must be one of agents")


def _limits(reader: FieldReader, value: object, path: Path) -> Limits:
    if value is None:
        return Limits()
    raw = reader.mapping(value, path, optional=("max_steps", "timeout_seconds", "max_cost_usd"))
    if raw is None:
        return Limits()
    default = Limits()
    steps = default.max_steps
    if "max_steps" in raw:
        steps = _int(reader, raw["max_steps"], (*path, "max_steps"), 1, MAX_STEPS) or steps
    timeout = default.timeout_seconds
    if "timeout_seconds" in raw:
        timeout = _number(reader, raw["timeout_seconds"], (*path, "timeout_seconds")) or timeout
        if timeout > MAX_TIMEOUT_SECONDS:
            reader.error((*path, "timeout_seconds"), f"must be at most {MAX_TIMEOUT_SECONDS}")
        if timeout <= 0:
            timeout = default.timeout_seconds
            reader.error((*path, "timeout_seconds"), "must be greater than 0")
    cost = default.max_cost_usd
    if "max_cost_usd" in raw:
        number = _number(reader, raw["max_cost_usd"], (*path, "max_cost_usd"))
        cost = default.max_cost_usd if number is None else number
    return Limits(steps, float(timeout), float(cost))


def _budget(reader: FieldReader, value: object, path: Path, *, priced: bool) -> CallBudget:
    if value is None:
        return CallBudget()
    fields = ("max_cost_usd_per_call", "max_tokens", *(("price_per_1m_tokens",) if priced else ()))
    raw = reader.mapping(value, path, optional=fields)
    if raw is None:
        return CallBudget()
    cost = None
    if "max_cost_usd_per_call" in raw:
        cost = _number(reader, raw["max_cost_usd_per_call"], (*path, "max_cost_usd_per_call"))
        if cost is not None and cost <= 0:
            reader.error((*path, "max_cost_usd_per_call"), "must be greater than 0")
            cost = None
    tokens = None
    if "max_tokens" in raw:
        tokens = _int(reader, raw["max_tokens"], (*path, "max_tokens"), 1, MAX_TOKENS_PER_CALL)
    price = None
    if "price_per_1m_tokens" in raw:
        ppath = (*path, "price_per_1m_tokens")
        pair = reader.mapping(raw["price_per_1m_tokens"], ppath, required=("input", "output"))
        if pair is not None and "input" in pair and "output" in pair:
            price_in = _number(reader, pair["input"], (*ppath, "input"))
            price_out = _number(reader, pair["output"], (*ppath, "output"))
            if price_in is not None and price_out is not None:
                price = (price_in, price_out)
    return CallBudget(cost, tokens, price)


def _schema(
    reader: FieldReader, parent: Mapping[str, object], path: Path
) -> Mapping[str, Any] | None:
    value = parent.get(str(path[-1]))
    if value is None:
        return None
    if not isinstance(value, dict | bool):
        reader.error(path, "expected a JSON Schema (a mapping)")
        return None
    if isinstance(value, bool):
        return {} if value else {"not": {}}
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        where = (*path, *(str(p) if not isinstance(p, int) else p for p in exc.path))
        reader.error(where, f"invalid JSON Schema: {exc.message}")
        return None
    return value


def _int(reader: FieldReader, value: object, path: Path, minimum: int, maximum: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        reader.error(path, "expected an integer")
        return None
    if not minimum <= value <= maximum:
        reader.error(path, f"must be between {minimum} and {maximum}, got {value}")
        return None
    return value


def _number(reader: FieldReader, value: object, path: Path) -> float | None:
    number = reader.number(value, path, minimum=0)
    if number is not None and not math.isfinite(number):
        reader.error(path, "must be finite")
        return None
    return None if number is None else float(number)


def _opt_string(reader: FieldReader, parent: Mapping[str, object], path: Path) -> str | None:
    value = parent.get(str(path[-1]))
    return None if value is None else reader.string(value, path)


def _document(
    kind: str, name: str, description: str | None, spec: dict[str, Any]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["description"] = description
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            out[key] = dict(item)
        elif isinstance(item, Sequence) and not isinstance(item, str):
            out[key] = list(item)
        else:
            out[key] = item
    return out


def _plain(filename: str, message: str) -> ErrorDetail:
    return ErrorDetail(
        file=filename, document=None, field=None, line=None, column=None, message=message
    )
