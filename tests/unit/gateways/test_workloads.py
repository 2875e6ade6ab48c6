"""policy/workloads/: Agent and Pipeline documents, their errors and canonical form."""

from __future__ import annotations

import pytest

from policy.errors import PolicyValidationError
from policy.workloads import (
    AgentConfig,
    AgentTool,
    ConnectorTool,
    HttpTool,
    McpTool,
    PipelineConfig,
    check_references,
    deployed_to,
    parse_workload,
    parse_workload_source,
)

AGENT = """\
apiVersion: kaizen.studio/v1
kind: Agent
metadata: {name: support-bot, description: Answers support questions}
spec:
  model: {provider: openai, name: gpt-4o-mini, parameters: {temperature: 0.2}}
  system_prompt: You are helpful.
  tools:
    - agent: researcher
    - http: {name: weather, url: "https://weather.example/api", method: GET,
             input_schema: {type: object, properties: {city: {type: string}}}}
    - mcp: {server_url: "https://tools.example/mcp", tool: search}
  input_schema: {type: string}
  cost_estimate_usd: 0.002
  limits: {max_steps: 8, timeout_seconds: 30, max_cost_usd: 0.5}
---
kind: Pipeline
metadata: {name: triage}
spec:
  pattern: router
  router: support-bot
  routes: {billing: billing-bot, tech: tech-bot}
  default: support-bot
"""


def errors(text: str) -> list[dict[str, object]]:
    with pytest.raises(PolicyValidationError) as caught:
        parse_workload_source(text, "agents.yaml")
    return [dict(d) for d in caught.value.details]


def test_an_agent_and_a_pipeline_parse_with_every_field() -> None:
    agent, pipeline = parse_workload_source(AGENT)
    assert isinstance(agent, AgentConfig)
    assert isinstance(pipeline, PipelineConfig)
    assert agent.model.parameters == {"temperature": 0.2}
    assert agent.tools == (
        AgentTool("researcher"),
        HttpTool(
            "weather",
            "https://weather.example/api",
            "GET",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        ),
        McpTool("https://tools.example/mcp", "search"),
    )
    assert agent.limits.max_steps == 8
    assert agent.limits.max_cost_usd == 0.5
    assert pipeline.pattern == "router"
    assert set(pipeline.agent_names()) == {"support-bot", "billing-bot", "tech-bot"}


def test_to_dict_round_trips_through_the_parser() -> None:
    for workload in parse_workload_source(AGENT):
        document = workload.to_dict()
        assert document["apiVersion"] == "kaizen.studio/v1"
        assert parse_workload(document) == workload


def test_errors_name_the_field_line_and_column() -> None:
    text = AGENT.replace("max_steps: 8", "max_steps: 0").replace(
        "provider: openai", "provider: gpt"
    )
    found = {(d["field"], d["line"], d["column"]) for d in errors(text)}
    assert ("spec.model.provider", 5, 21) in found
    assert ("spec.limits.max_steps", 14, 23) in found


def test_unknown_fields_and_bad_tools_are_errors() -> None:
    text = AGENT.replace("system_prompt:", "system_promt:").replace(
        "tool: search", "tool: search, extra: 1"
    )
    messages = {d["field"]: str(d["message"]) for d in errors(text)}
    assert "unknown field 'system_promt'" in messages["spec.system_promt"]
    assert "unknown field 'extra'" in messages["spec.tools[2].mcp.extra"]


def test_an_invalid_json_schema_is_reported_at_its_field() -> None:
    text = AGENT.replace("input_schema: {type: string}", "input_schema: {type: strung}")
    (detail,) = errors(text)
    assert detail["field"] == "spec.input_schema.type"
    assert "invalid JSON Schema" in str(detail["message"])


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("{pattern: sequential}", "spec", "missing required field 'agents'"),
        ("{pattern: loop, agents: [a]}", "spec.pattern", "must be one of"),
        ("{pattern: debate, debaters: [a], judge: j}", "spec.debaters", "at least two"),
        ("{pattern: handoff, agents: [a, b], entry: c}", "spec.entry", "one of agents"),
        ("{pattern: ensemble, agents: [a], strategy: aggregator}", "spec", "aggregator agent"),
        ("{pattern: consensus, agents: [a, b], threshold: 0.2}", "spec.threshold", "at least 0.5"),
        ("{pattern: parallel, agents: [a, a]}", "spec.agents", "twice"),
        ("{pattern: router, router: r, routes: {}}", "spec.routes", "at least one route"),
        ("{pattern: sequential, agents: [a], judge: j}", "spec.judge", "unknown field"),
    ],
)
def test_pipeline_rules(spec: str, field: str, message: str) -> None:
    text = f"kind: Pipeline\nmetadata: {{name: p}}\nspec: {spec}\n"
    details = errors(text)
    assert any(d["field"] == field and message in str(d["message"]) for d in details), details


def test_json_sources_and_api_bodies_give_field_paths() -> None:
    text = '{"kind": "Agent", "metadata": {"name": "x"}, "spec": {"model": {"provider": "demo"}}}'
    (detail,) = errors(text)
    assert detail["field"] == "spec.model"
    assert "missing required field 'name'" in str(detail["message"])
    with pytest.raises(PolicyValidationError) as caught:
        parse_workload({"kind": "Agent", "metadata": {"name": "x"}, "spec": {"model": 3}})
    assert caught.value.details[0]["field"] == "spec.model"


def test_deployed_to_filters_by_gateway_and_checks_references() -> None:
    agent, pipeline = parse_workload_source(AGENT)
    entries = {"support-bot": {**agent.to_dict(), "gateways": ["gw-1"]}}
    assert deployed_to(entries, "gw-1", "data.json") == {"support-bot": agent}
    assert deployed_to(entries, "gw-2", "data.json") == {}
    assert deployed_to(entries, None, "data.json") == {"support-bot": agent}
    assert isinstance(agent, AgentConfig)
    assert isinstance(pipeline, PipelineConfig)
    problems = check_references({"support-bot": agent}, [pipeline])
    assert "agent support-bot: tool agent 'researcher' is not deployed" in problems
    assert "pipeline triage: agent 'billing-bot' is not deployed" in problems


BUDGETED = """\
kind: Agent
metadata: {name: local-bot}
spec:
  model: {provider: vllm, name: in-house-llm}
  limits: {max_cost_usd: 0.5}
  budget: {max_cost_usd_per_call: 0.05, max_tokens: 4000,
           price_per_1m_tokens: {input: 0.5, output: 1.5}}
---
kind: Pipeline
metadata: {name: chain}
spec:
  pattern: sequential
  agents: [local-bot]
  budget: {max_tokens: 9000}
"""


def test_spec_budget_is_the_per_call_ceiling_and_round_trips() -> None:
    agent, pipeline = parse_workload_source(BUDGETED)
    assert isinstance(agent, AgentConfig)
    assert agent.budget.price_per_1m_tokens == (0.5, 1.5)
    assert (agent.budget.cost_ceiling(agent.limits), agent.budget.token_ceiling()) == (0.05, 4000)
    # Without max_cost_usd_per_call the run's own cost limit is the ceiling.
    assert pipeline.budget.cost_ceiling(pipeline.limits) == pipeline.limits.max_cost_usd
    assert pipeline.budget.token_ceiling() == 9000
    for workload in (agent, pipeline):
        assert parse_workload(workload.to_dict()) == workload
    # Configs without a budget keep their canonical form.
    plain = parse_workload_source(AGENT)[0].to_dict()
    assert "budget" not in plain["spec"]


@pytest.mark.parametrize(
    ("budget", "field", "message"),
    [
        ("{max_cost_usd_per_call: 0}", "spec.budget.max_cost_usd_per_call", "greater than 0"),
        ("{max_tokens: 0}", "spec.budget.max_tokens", "must be between 1 and"),
        ("{max_tokens: 1.5}", "spec.budget.max_tokens", "expected an integer"),
        (
            "{price_per_1m_tokens: {input: -1, output: 1}}",
            "spec.budget.price_per_1m_tokens.input",
            "at least 0",
        ),
        ("{price_per_1m_tokens: {input: 1}}", "spec.budget.price_per_1m_tokens", "output"),
        ("{cheap: true}", "spec.budget.cheap", "unknown field"),
    ],
)
def test_bad_budgets_are_errors_naming_the_field(budget: str, field: str, message: str) -> None:
    head = "kind: Agent\nmetadata: {name: a}\nspec:\n  model: {provider: demo, name: demo}\n"
    text = f"{head}  budget: {budget}\n"
    found = errors(text)
    assert any(d["field"] == field and message in str(d["message"]) for d in found), found


CONNECTOR_AGENT = """\
kind: Agent
metadata: {name: analyst}
spec:
  model: {provider: demo, name: demo}
  tools:
    - connector: {name: warehouse, operations: [sql.query]}
    - connector: {name: crm-db, operations: [sql.query], tool_name: crm, description: CRM}
    - connector: {name: files, operations: [objects.list, objects.get]}
"""


def test_connector_tools_name_the_connector_and_round_trip() -> None:
    (agent,) = parse_workload_source(CONNECTOR_AGENT)
    assert isinstance(agent, AgentConfig)
    assert agent.tools == (
        ConnectorTool("warehouse", ("sql.query",)),
        ConnectorTool("crm-db", ("sql.query",), "crm", "CRM"),
        ConnectorTool("files", ("objects.list", "objects.get")),
    )
    assert [t.name for t in agent.tools] == ["sql_query_warehouse", "crm", "objects_files"]
    assert agent.referenced_connectors() == ("warehouse", "crm-db", "files")
    assert parse_workload(agent.to_dict(), "round trip") == agent


@pytest.mark.parametrize(
    ("tool", "field", "message"),
    [
        ("{connector: {name: Warehouse, operations: [sql.query]}}", "name", "connector name"),
        ("{connector: {name: w, operations: [objects.copy]}}", "operations[0]", "objects.get"),
        (
            "{connector: {name: w, operations: [sql.query, objects.get]}}",
            "operations",
            "one tool names one",
        ),
        ("{connector: {name: w, operations: []}}", "operations", "at least one"),
        ("{connector: {name: w}}", "", "missing required field 'operations'"),
        ("{connector: {name: w, operations: [sql.query], password: x}}", "password", "unknown"),
        (
            "{connector: {name: " + "w" * 60 + ", operations: [sql.query]}}",
            "name",
            "too long; add tool_name",
        ),
    ],
)
def test_bad_connector_tools_are_errors_naming_the_field(
    tool: str, field: str, message: str
) -> None:
    text = CONNECTOR_AGENT.split("  tools:")[0] + f"  tools:\n    - {tool}\n"
    (detail,) = errors(text)
    assert str(detail["field"]).endswith("connector" + (f".{field}" if field else "")), detail
    assert message in str(detail["message"])
