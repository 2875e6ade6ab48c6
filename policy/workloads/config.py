"""The workload configs: `AgentConfig` and `PipelineConfig` with their model, tools, limits and
per-call budget, and `to_dict()`, the canonical form `parse_workload` reads back unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policy.documents.models import API_VERSION

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
DEFAULT_MAX_TOKENS_PER_CALL = 100_000


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


SQL_OPERATIONS = ("sql.query",)
OBJECT_OPERATIONS = ("objects.list", "objects.get", "objects.put")
CONNECTOR_OPERATIONS = (*SQL_OPERATIONS, *OBJECT_OPERATIONS)


@dataclass(frozen=True)
class ConnectorTool:
    """Operations on a data connector (`/api/v1/connectors`) by its name; the gateway runs
    them with the connector's settings from the bundle and its password read at run time,
    each one decided by the sidecar (resource `connector:<name>`, the object it touches)."""

    connector: str
    operations: tuple[str, ...] = ("sql.query",)
    # the name the model sees; default `sql_query_<connector>` / `objects_<connector>`
    alias: str | None = None
    description: str | None = None

    @property
    def objects(self) -> bool:
        """An object-store tool (objects.*), not a SQL one."""
        return any(op in OBJECT_OPERATIONS for op in self.operations)

    @property
    def name(self) -> str:
        kind = "objects" if self.objects else "sql_query"
        return self.alias or f"{kind}_{self.connector}".replace("-", "_")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.connector, "operations": list(self.operations)}
        if self.alias is not None:
            out["tool_name"] = self.alias
        if self.description is not None:
            out["description"] = self.description
        return {"connector": out}


Tool = AgentTool | HttpTool | McpTool | ConnectorTool


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

    def referenced_connectors(self) -> tuple[str, ...]:
        return tuple(tool.connector for tool in self.tools if isinstance(tool, ConnectorTool))


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
