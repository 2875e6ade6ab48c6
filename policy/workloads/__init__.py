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
so they are true ceilings. An agent whose model is not in `policy.engine.prices` declares
`price_per_1m_tokens: {input, output}`; otherwise it cannot be deployed.

A pipeline names its pattern and the agents each role is played by; see `PATTERNS` and
gateways/README.md for what each pattern does.

Modules: `config` (the dataclasses and `to_dict()`), `parse` (documents to configs), `agent`
and `pipeline` (their specs), `values` (field readers both share: limits, budget, schemas),
`deployed` (bundle entries for a gateway, references). Import from here.
"""

from __future__ import annotations

from policy.workloads.config import (
    DEFAULT_MAX_TOKENS_PER_CALL,
    PATTERNS,
    PROVIDERS,
    AgentConfig,
    AgentTool,
    CallBudget,
    ConnectorTool,
    HttpTool,
    Limits,
    McpTool,
    ModelConfig,
    Pattern,
    PipelineConfig,
    Tool,
    Workload,
)
from policy.workloads.deployed import check_references, deployed_to
from policy.workloads.parse import parse_workload, parse_workload_source

__all__ = [
    "DEFAULT_MAX_TOKENS_PER_CALL",
    "PATTERNS",
    "PROVIDERS",
    "AgentConfig",
    "AgentTool",
    "CallBudget",
    "ConnectorTool",
    "HttpTool",
    "Limits",
    "McpTool",
    "ModelConfig",
    "Pattern",
    "PipelineConfig",
    "Tool",
    "Workload",
    "check_references",
    "deployed_to",
    "parse_workload",
    "parse_workload_source",
]
