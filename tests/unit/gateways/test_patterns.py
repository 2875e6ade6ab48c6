"""The executor and the nine pipeline patterns, answered by the local fake LLM server.

Each agent uses its own model name (`m-<agent>`), so a script can answer as that agent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mcp.types as types
import pytest
from mcp.server.lowlevel import Server

from gateways.deployments import Deployments  # noqa: TID251  (the gateway under test)
from gateways.errors import LimitExceeded, PipelineError, RunTimeout  # noqa: TID251  (the gateway under test)
from gateways.executor import Executor  # noqa: TID251  (the gateway under test)
from gateways.providers import EnvSecretResolver, PriceTable, ProviderRegistry  # noqa: TID251  (the gateway under test)
from policy.net.outbound import OutboundGuard
from policy.workloads import AgentConfig, PipelineConfig, parse_workload
from tests.fake_llm import FakeLLM, Reply, ServedApp, last_user_text

# The fake LLM, the HTTP tools and the MCP server listen on 127.0.0.1: the operator allowance.
LOCAL = OutboundGuard.from_setting("127.0.0.1/32")


def agent(name: str, url: str, provider: str = "openai", **spec: Any) -> AgentConfig:
    document = {
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"model": {"provider": provider, "name": f"m-{name}", "base_url": url}, **spec},
    }
    parsed = parse_workload(document)
    assert isinstance(parsed, AgentConfig)
    return parsed


def pipeline(name: str, **spec: Any) -> PipelineConfig:
    parsed = parse_workload({"kind": "Pipeline", "metadata": {"name": name}, "spec": spec})
    assert isinstance(parsed, PipelineConfig)
    return parsed


def deploy(
    fake: FakeLLM, names: list[str], *pipes: PipelineConfig, **extra: AgentConfig
) -> Deployments:
    agents = {n: agent(n, fake.openai_url) for n in names}
    agents.update(extra)
    return Deployments("org", "1", "kid", agents, {p.name: p for p in pipes})


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    registry = ProviderRegistry(EnvSecretResolver(), LOCAL)
    yield Executor(registry, PriceTable())
    await registry.aclose()


def by_agent(**answers: Any) -> Any:
    """A script answering as each agent: a string, a list (one per call) or a function."""
    calls: dict[str, int] = {}

    def script(model: str, messages: list[dict[str, Any]]) -> Reply | str:
        name = model.removeprefix("m-")
        answer = answers[name]
        calls[name] = calls.get(name, 0) + 1
        if callable(answer):
            return answer(last_user_text(messages))
        if isinstance(answer, list):
            return answer[min(calls[name], len(answer)) - 1]
        return str(answer)

    script.calls = calls  # type: ignore[attr-defined]
    return script


async def test_sequential_feeds_each_output_to_the_next(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a=lambda t: f"A({t})", b=lambda t: f"B({t})"))
    p = pipeline("chain", pattern="sequential", agents=["a", "b"])
    result = await executor.run_pipeline(deploy(fake, ["a", "b"], p), "chain", "x")
    assert result.output == "B(A(x))"
    assert result.run.steps == 2
    assert result.run.usage.input_tokens > 0


async def test_parallel_fans_out_and_aggregates(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a="alpha", b="beta", agg=lambda t: "AGG " + t.replace("\n", " ")))
    plain = pipeline("fan", pattern="parallel", agents=["a", "b"])
    joined = pipeline("fan2", pattern="parallel", agents=["a", "b"], aggregator="agg")
    deployments = deploy(fake, ["a", "b", "agg"], plain, joined)
    result = await executor.run_pipeline(deployments, "fan", "q")
    assert json.loads(result.output) == {"a": "alpha", "b": "beta"}
    result = await executor.run_pipeline(deployments, "fan2", "q")
    assert result.output.startswith("AGG q")
    assert "### a alpha" in result.output
    assert "### b beta" in result.output


async def test_router_sends_the_input_to_the_chosen_route(
    fake: FakeLLM, executor: Executor
) -> None:
    fake.reset(by_agent(triage=["Billing.", "no idea"], billing=lambda t: f"billing got {t}"))
    p = pipeline(
        "r", pattern="router", router="triage", routes={"billing": "billing", "tech": "tech"}
    )
    deployments = deploy(fake, ["triage", "billing", "tech"], p)
    result = await executor.run_pipeline(deployments, "r", "my invoice")
    assert result.output == "billing got my invoice"
    with pytest.raises(PipelineError, match="none of the routes"):
        await executor.run_pipeline(deployments, "r", "hm")


async def test_router_falls_back_to_default(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(triage="weather?", general="general answer"))
    p = pipeline(
        "r", pattern="router", router="triage", routes={"billing": "billing"}, default="general"
    )
    result = await executor.run_pipeline(
        deploy(fake, ["triage", "billing", "general"], p), "r", "q"
    )
    assert result.output == "general answer"


async def test_ensemble_majority_and_aggregator(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a="Paris", b="paris.", c="Lyon", judge=lambda t: "final: Paris"))
    vote = pipeline("vote", pattern="ensemble", agents=["a", "b", "c"])
    agg = pipeline("agg", pattern="ensemble", agents=["a", "c"], aggregator="judge")
    deployments = deploy(fake, ["a", "b", "c", "judge"], vote, agg)
    assert (await executor.run_pipeline(deployments, "vote", "capital?")).output == "Paris"
    assert (await executor.run_pipeline(deployments, "agg", "capital?")).output == "final: Paris"


async def test_blackboard_runs_who_the_controller_picks(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(
        by_agent(
            lead=["researcher", "writer", "DONE"],
            researcher="fact: water boils at 100C",
            writer=lambda t: "essay using " + ("fact" if "water boils" in t else "nothing"),
        )
    )
    p = pipeline("bb", pattern="blackboard", controller="lead", agents=["researcher", "writer"])
    result = await executor.run_pipeline(
        deploy(fake, ["lead", "researcher", "writer"], p), "bb", "q"
    )
    assert result.output == "essay using fact"
    assert result.run.steps == 5


async def test_blackboard_refuses_an_unknown_agent(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(lead="somebody"))
    p = pipeline("bb", pattern="blackboard", controller="lead", agents=["x"])
    with pytest.raises(PipelineError, match="neither DONE nor one of x"):
        await executor.run_pipeline(deploy(fake, ["lead", "x"], p), "bb", "q")


async def test_supervisor_assigns_and_concludes(fake: FakeLLM, executor: Executor) -> None:
    script = by_agent(
        boss=["ASSIGN coder: write add()\nASSIGN tester: test add()", "FINAL: shipped add()"],
        coder=lambda t: f"done: {t}",
        tester=lambda t: f"ok: {t}",
    )
    fake.reset(script)
    p = pipeline("sw", pattern="supervisor_worker", supervisor="boss", workers=["coder", "tester"])
    result = await executor.run_pipeline(deploy(fake, ["boss", "coder", "tester"], p), "sw", "add")
    assert result.output == "shipped add()"
    assert script.calls == {"boss": 2, "coder": 1, "tester": 1}
    second_boss_prompt = last_user_text(fake.requests[-1]["messages"])
    assert "done: write add()" in second_boss_prompt
    assert "ok: test add()" in second_boss_prompt


async def test_consensus_revises_until_agreement(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a=["4", "4"], b=["5", "4."], c=["4", "4"]))
    p = pipeline("c", pattern="consensus", agents=["a", "b", "c"])
    result = await executor.run_pipeline(deploy(fake, ["a", "b", "c"], p), "c", "2+2?")
    assert result.output == "4"
    assert result.run.steps == 6


async def test_consensus_fails_clearly_without_agreement(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a="yes", b="no"))
    p = pipeline("c", pattern="consensus", agents=["a", "b"], max_rounds=2, threshold=1)
    with pytest.raises(PipelineError, match=r"no consensus after 2 round\(s\)"):
        await executor.run_pipeline(deploy(fake, ["a", "b"], p), "c", "q")


async def test_debate_alternates_then_the_judge_decides(fake: FakeLLM, executor: Executor) -> None:
    script = by_agent(
        pro="pro point", con="con point", judge=lambda t: f"verdict after {t.count('###')}"
    )
    fake.reset(script)
    p = pipeline("d", pattern="debate", debaters=["pro", "con"], judge="judge", rounds=2)
    result = await executor.run_pipeline(deploy(fake, ["pro", "con", "judge"], p), "d", "tabs?")
    assert result.output == "verdict after 4"
    assert script.calls == {"pro": 2, "con": 2, "judge": 1}


async def test_handoff_passes_control_and_notes(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(
        by_agent(
            triage="HANDOFF: billing - customer asks about an invoice",
            billing=lambda t: "refund issued" if "invoice" in t else "?",
        )
    )
    p = pipeline("h", pattern="handoff", entry="triage", agents=["triage", "billing"])
    result = await executor.run_pipeline(deploy(fake, ["triage", "billing"], p), "h", "help")
    assert result.output == "refund issued"


async def test_handoff_loops_stop_at_max_steps(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(by_agent(a="HANDOFF: b", b="HANDOFF: a"))
    p = pipeline("h", pattern="handoff", entry="a", agents=["a", "b"], limits={"max_steps": 5})
    with pytest.raises(LimitExceeded, match="max_steps=5") as caught:
        await executor.run_pipeline(deploy(fake, ["a", "b"], p), "h", "q")
    assert caught.value.run.steps == 6


async def test_max_cost_stops_a_run(fake: FakeLLM) -> None:
    fake.reset(lambda m, msgs: Reply("x", input_tokens=1_000_000, output_tokens=0))
    registry = ProviderRegistry(EnvSecretResolver(), LOCAL)
    prices = PriceTable({"m-a": (2.0, 8.0)})
    executor = Executor(registry, prices)
    p = pipeline("s", pattern="sequential", agents=["a", "a2"], limits={"max_cost_usd": 1})
    a2 = agent("a2", fake.openai_url)
    with pytest.raises(LimitExceeded, match=r"max_cost_usd=1 \(spent 2\.000000 USD\)"):
        await executor.run_pipeline(deploy(fake, ["a"], p, a2=a2), "s", "q")
    await registry.aclose()


async def test_timeout_stops_a_slow_run(fake: FakeLLM, executor: Executor) -> None:
    fake.reset(lambda m, msgs: Reply("late", delay=2.0))
    slow = agent("slow", fake.openai_url, limits={"timeout_seconds": 0.3})
    deployments = Deployments("org", "1", "kid", {"slow": slow}, {})
    with pytest.raises(RunTimeout, match=r"timeout_seconds=0\.3"):
        await executor.invoke_agent(deployments, "slow", "q")


async def test_agents_call_agents_and_http_tools(fake: FakeLLM, executor: Executor) -> None:
    def script(model: str, messages: list[dict[str, Any]]) -> Reply | str:
        last = messages[-1]
        if model == "m-helper":
            return f"helper says {last_user_text(messages)}"
        if last.get("role") == "tool" or isinstance(last.get("content"), list):
            return "answer with " + " | ".join(
                str(m["content"]) for m in messages if m.get("role") == "tool"
            )
        return Reply(tool_calls=[("helper", {"input": "hi"}), ("echo", {"city": "Oslo"})])

    fake.reset(script)
    main = agent(
        "main",
        fake.openai_url,
        tools=[
            {"agent": "helper"},
            {"http": {"name": "echo", "url": fake.url + "/tools/echo", "method": "POST"}},
        ],
    )
    deployments = deploy(fake, ["helper"], main=main)
    result = await executor.invoke_agent(deployments, "main", "go")
    assert result.output == 'answer with helper says hi | {"received":{"city":"Oslo"}}'
    assert result.run.steps == 3
    sent_tools = {t["function"]["name"] for t in fake.requests[0]["tools"]}
    assert sent_tools == {"helper", "echo"}


async def test_an_agent_calling_itself_is_cut_by_max_steps(
    fake: FakeLLM, executor: Executor
) -> None:
    fake.reset(lambda m, msgs: Reply(tool_calls=[("loop", {"input": "again"})]))
    loop = agent("loop", fake.openai_url, tools=[{"agent": "loop"}], limits={"max_steps": 4})
    with pytest.raises(LimitExceeded, match="max_steps=4"):
        await executor.invoke_agent(Deployments("o", "1", "k", {"loop": loop}, {}), "loop", "q")


@pytest.fixture(scope="module")
def remote_mcp() -> Iterator[str]:
    """A small MCP server built with the official SDK, serving one tool `lookup`."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name="lookup", input_schema={"type": "object"})]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = f"found {json.dumps(params.arguments, sort_keys=True)}"
        return types.CallToolResult(content=[types.TextContent(text=text)])

    server = Server("remote", on_list_tools=list_tools, on_call_tool=call_tool)
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    served = ServedApp(app)
    yield served.url + "/mcp"
    served.stop()


async def test_agents_call_tools_of_remote_mcp_servers(
    fake: FakeLLM, executor: Executor, remote_mcp: str
) -> None:
    def script(model: str, messages: list[dict[str, Any]]) -> Reply | str:
        if messages[-1].get("role") == "tool":
            return "tool said: " + str(messages[-1]["content"])
        return Reply(tool_calls=[("kb", {"q": "refunds"})])

    fake.reset(script)
    main = agent(
        "main",
        fake.openai_url,
        tools=[{"mcp": {"server_url": remote_mcp, "tool": "lookup", "name": "kb"}}],
    )
    result = await executor.invoke_agent(
        Deployments("o", "1", "k", {"main": main}, {}), "main", "q"
    )
    assert result.output == 'tool said: found {"q": "refunds"}'
