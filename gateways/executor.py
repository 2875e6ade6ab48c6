"""Runs agents (a model plus its tools, in a loop) and pipelines (one of the nine patterns).

Every run has a `Run` that enforces its limits: each model call is a step (`max_steps`),
every call's token usage is priced and summed (`max_cost_usd`, and the workload's
`spec.budget` ceilings `max_cost_usd_per_call` / `max_tokens`, which the sidecar reserved
before the call), and the whole run is cut at `timeout_seconds`. Passing a limit raises
`LimitExceeded` / `RunTimeout` with a message that names the limit; the caller records a
failed execution. Agents called as tools run inside the caller's `Run`, so a loop of
agents calling each other ends at `max_steps`. `Run.settlement()` is what the call really
used, for the sidecar's `/settle`, whether it succeeded, failed or was cut.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import jsonschema
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from policy.net.outbound import OutboundRefused
from policy.net.outbound_http import guarded_httpx2_client
from policy.runtime import tracing
from policy.workloads import (
    AgentConfig,
    AgentTool,
    CallBudget,
    ConnectorTool,
    HttpTool,
    Limits,
    McpTool,
    PipelineConfig,
)

from gateways import connector_calls
from gateways.agent_io import input_text, parse_output, tool_schema, wraps_input
from gateways.deployments import Deployments
from gateways.errors import (
    Forbidden,
    GatewayError,
    InvalidInput,
    LimitExceeded,
    NotFound,
    ProviderError,
    RunTimeout,
    ToolError,
)
from gateways.providers import ChatRequest, ChatResult, PriceTable, ProviderRegistry
from gateways.providers.base import TextDelta, ToolCall, ToolSpec, Usage

MAX_TOOL_RESULT_CHARS = 32_000
Delta = Callable[[str], Awaitable[None]]


@dataclass
class Run:
    """The budget of one execution: steps, cost, tokens and wall time, shared by all in it."""

    limits: Limits
    prices: PriceTable
    budget: CallBudget = field(default_factory=CallBudget)
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    # A model call ended without reporting its usage after it may have generated (a cut or
    # timed-out call, a stream broken mid-way): what it used is unknown.
    unmetered: bool = False
    # Asks the sidecar, as the original caller, before every nested agent call (nested.py).
    # None only where no sidecar exists (the executor used in-process, in tests).
    nested: NestedCheck | None = None

    @property
    def max_cost_usd(self) -> float:
        return self.budget.cost_ceiling(self.limits)

    @property
    def max_tokens(self) -> int:
        return self.budget.token_ceiling()

    @property
    def tokens(self) -> int:
        return self.usage.input_tokens + self.usage.output_tokens

    async def authorize(self, caller: str, agent: str) -> None:
        if self.nested is not None:
            await self.nested.check(caller, agent)

    async def authorize_connector(
        self, caller: str, connector: str, operation: str, table: str | None, sql: str
    ) -> None:
        """Every connector call is a decision; without a sidecar to ask there is none."""
        if self.nested is None:
            raise Forbidden(
                f"{caller} calls connector {connector}, but no sidecar is configured to decide it"
            )
        await self.nested.check_connector(caller, connector, operation, table, sql)

    async def authorize_object(
        self, caller: str, connector: str, action: str, operation: str, body: dict[str, Any]
    ) -> None:
        """Every object call is a decision; without a sidecar to ask there is none."""
        if self.nested is None:
            raise Forbidden(
                f"{caller} calls connector {connector}, but no sidecar is configured to decide it"
            )
        await self.nested.check_object(caller, connector, action, operation, body)

    def step(self, what: str) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(
                f"stopped at max_steps={self.limits.max_steps} (next step: {what})",
                {"limit": "max_steps", "value": self.limits.max_steps},
            )

    def charge(self, model: str, usage: Usage, price: tuple[float, float] | None = None) -> None:
        self.usage = self.usage + usage
        self.cost_usd += self.prices.cost(model, usage, price)
        if self.cost_usd > self.max_cost_usd:
            name = (
                "max_cost_usd"
                if self.max_cost_usd == self.limits.max_cost_usd
                else "budget.max_cost_usd_per_call"
            )
            raise LimitExceeded(
                f"stopped at {name}={self.max_cost_usd:g} (spent {self.cost_usd:.6f} USD)",
                {"limit": name, "value": self.max_cost_usd},
            )
        if self.tokens > self.max_tokens:
            raise LimitExceeded(
                f"stopped at budget.max_tokens={self.max_tokens} (used {self.tokens} tokens)",
                {"limit": "budget.max_tokens", "value": self.max_tokens},
            )

    def settlement(self) -> dict[str, float]:
        """`actual` for the sidecar's /settle: what the call used, by budget metric.

        A call whose usage is unknown (`unmetered`) counts at least its ceilings, which is
        what the sidecar reserved for it: it never settles below what it may have cost.
        """
        cost, tokens = self.cost_usd, float(self.tokens)
        if self.unmetered:
            cost, tokens = max(cost, self.max_cost_usd), max(tokens, float(self.max_tokens))
        return {"cost_usd": cost, "tokens": tokens, "executions": 1}

    def remaining(self) -> float:
        return max(0.001, self.limits.timeout_seconds - (time.monotonic() - self.started))


@dataclass(frozen=True)
class RunResult:
    output: Any
    run: Run


class NestedCheck(Protocol):
    async def check(self, caller: str, agent: str) -> None: ...

    async def check_connector(
        self, caller: str, connector: str, operation: str, table: str | None, sql: str
    ) -> None: ...

    async def check_object(
        self, caller: str, connector: str, action: str, operation: str, body: dict[str, Any]
    ) -> None: ...


class Executor:
    def __init__(self, providers: ProviderRegistry, prices: PriceTable) -> None:
        self.providers = providers
        self.prices = prices
        # Tool URLs are the tenant's word: the providers' guarded client (policy/net/outbound.py).
        self.http = providers.http

    def new_run(self, workload: AgentConfig | PipelineConfig) -> Run:
        """A run with the workload's limits; made by the caller so that what a run used
        stays known even when the caller's task is cancelled (a cut stream)."""
        return Run(workload.limits, self.prices, workload.budget)

    async def invoke_agent(
        self,
        deployments: Deployments,
        name: str,
        value: Any,
        on_delta: Delta | None = None,
        run: Run | None = None,
    ) -> RunResult:
        agent = deployments.agent(name)
        run = run or self.new_run(agent)
        text = input_text(agent.input_schema, value, f"agent {name}")
        output = await self._within(
            run, self.call_agent(deployments, agent, text, run, on_delta), f"agent {name}"
        )
        return RunResult(self._checked(agent.output_schema, output, f"agent {name}", run), run)

    async def run_pipeline(
        self, deployments: Deployments, name: str, value: Any, run: Run | None = None
    ) -> RunResult:
        from gateways.patterns import PATTERN_RUNNERS  # patterns import Executor's types

        pipeline = deployments.pipeline(name)
        run = run or self.new_run(pipeline)
        text = input_text(pipeline.input_schema, value, f"pipeline {name}")
        runner = PATTERN_RUNNERS[pipeline.pattern]
        context = PatternContext(self, deployments, pipeline, run)
        output = await self._within(run, runner(context, text), f"pipeline {name}")
        return RunResult(
            self._checked(pipeline.output_schema, output, f"pipeline {name}", run), run
        )

    def _checked(self, schema: Mapping[str, Any] | None, text: str, what: str, run: Run) -> Any:
        try:
            return parse_output(schema, text, what)
        except GatewayError as exc:
            exc.run = run
            raise

    async def _within(self, run: Run, work: Awaitable[str], what: str) -> str:
        try:
            async with asyncio.timeout(run.limits.timeout_seconds):
                return await work
        except TimeoutError:
            error = RunTimeout(
                f"{what} stopped at timeout_seconds={run.limits.timeout_seconds:g}",
                {"limit": "timeout_seconds", "value": run.limits.timeout_seconds},
            )
            error.run = run
            raise error from None
        except GatewayError as exc:
            exc.run = run  # what a failed run used is still settled and recorded
            raise

    async def call_agent(
        self,
        deployments: Deployments,
        agent: AgentConfig,
        text: str,
        run: Run,
        on_delta: Delta | None = None,
    ) -> str:
        """One agent turn-loop: model → tool calls → model … until it answers in text."""
        provider = self.providers.get(agent.model, deployments.organization_id)
        tools = self._tool_specs(deployments, agent)
        messages: list[dict[str, Any]] = []
        if agent.system_prompt:
            messages.append({"role": "system", "content": agent.system_prompt})
        messages.append({"role": "user", "content": text})
        while True:
            run.step(f"{agent.name} → {agent.model.provider}/{agent.model.name}")
            request = ChatRequest(
                model=agent.model.name,
                messages=list(messages),
                tools=tools,
                parameters=agent.model.parameters,
                timeout_seconds=run.remaining(),
            )
            # A span, but no traceparent to the provider: the trace stays ours (ADR 0013).
            with tracing.client_span(
                f"chat {agent.model.name}",
                **{
                    "gen_ai.provider.name": agent.model.provider,
                    "gen_ai.request.model": request.model,
                },
            ):
                result = await self._metered(provider, request, run, on_delta)
                tracing.set_attributes(
                    **{
                        "gen_ai.usage.input_tokens": result.usage.input_tokens,
                        "gen_ai.usage.output_tokens": result.usage.output_tokens,
                    }
                )
            run.charge(agent.model.name, result.usage, agent.budget.price_per_1m_tokens)
            if not result.tool_calls:
                return result.text
            messages.append(
                {"role": "assistant", "content": result.text, "tool_calls": list(result.tool_calls)}
            )
            for call in result.tool_calls:
                content = await self._call_tool(deployments, agent, call, run)
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "name": call.name,
                        "content": content[:MAX_TOOL_RESULT_CHARS],
                    }
                )

    async def _metered(
        self, provider: Any, request: ChatRequest, run: Run, on_delta: Delta | None
    ) -> ChatResult:
        """One model call; marks the run unmetered when it ends without its usage after the
        provider may have generated (cancelled, timed out, or broken mid-stream)."""
        streamed = False

        async def delta(text: str) -> None:
            nonlocal streamed
            streamed = True
            assert on_delta is not None
            await on_delta(text)

        try:
            if on_delta is None:
                result: ChatResult = await provider.complete(request)
                return result
            return await self._streamed(provider.stream(request), delta)
        except ProviderError:
            # An error answer generated nothing; a stream that broke after output did.
            run.unmetered = run.unmetered or streamed
            raise
        except BaseException:
            run.unmetered = True
            raise

    async def _streamed(self, events: Any, on_delta: Delta) -> ChatResult:
        final: ChatResult | None = None
        async for event in events:
            if isinstance(event, TextDelta):
                await on_delta(event.text)
            else:
                final = event
        if final is None:
            raise ProviderError("the provider's stream ended without a result")
        return final

    def _tool_specs(self, deployments: Deployments, agent: AgentConfig) -> tuple[ToolSpec, ...]:
        specs = []
        for tool in agent.tools:
            if isinstance(tool, AgentTool):
                target = deployments.agents.get(tool.agent)
                description = (target.description if target else None) or f"Ask {tool.agent}"
                specs.append(ToolSpec(tool.agent, description, tool_schema(target)))
            elif isinstance(tool, ConnectorTool):
                settings = deployments.connectors.get(tool.connector)
                specs.append(connector_calls.tool_spec(tool, settings))
            elif isinstance(tool, HttpTool):
                specs.append(
                    ToolSpec(
                        tool.name,
                        tool.description or f"{tool.method} {tool.url}",
                        tool.input_schema,
                    )
                )
            else:
                specs.append(
                    ToolSpec(
                        tool.name, f"MCP tool {tool.tool} of {tool.server_url}", {"type": "object"}
                    )
                )
        return tuple(specs)

    async def _call_tool(
        self, deployments: Deployments, agent: AgentConfig, call: ToolCall, run: Run
    ) -> str:
        tool = next((t for t in agent.tools if t.name == call.name), None)
        if tool is None:
            return f"error: no tool named {call.name!r}"
        if isinstance(tool, AgentTool):
            target = deployments.agents.get(tool.agent)
            if target is None:
                raise NotFound(
                    f"agent {agent.name} calls agent {tool.agent!r}, which is not deployed"
                )
            value = (
                call.arguments.get("input", call.arguments)
                if wraps_input(target)
                else call.arguments
            )
            try:
                text = input_text(target.input_schema, value, f"agent {target.name}")
            except InvalidInput as exc:
                return f"error: {exc.message}"
            await run.authorize(f"agent {agent.name}", target.name)
            return await self.call_agent(deployments, target, text, run)
        if isinstance(tool, HttpTool):
            return await self._http_tool(tool, call.arguments, run)
        if isinstance(tool, ConnectorTool):
            return await connector_calls.call(
                tool,
                call.arguments,
                caller=f"agent {agent.name}",
                deployments=deployments,
                run=run,
                secrets=self.providers.secrets,
                guard=self.providers.guard,
            )
        return await self._mcp_tool(tool, call.arguments, run)

    async def _http_tool(self, tool: HttpTool, arguments: Mapping[str, Any], run: Run) -> str:
        try:
            jsonschema.validate(dict(arguments), dict(tool.input_schema))
        except jsonschema.ValidationError as exc:
            return f"error: arguments do not match the tool's input_schema: {exc.message}"
        try:
            if tool.method in ("GET", "DELETE"):
                params = {
                    k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()
                }
                response = await self.http.request(
                    tool.method, tool.url, params=params, timeout=run.remaining()
                )
            else:
                response = await self.http.request(
                    tool.method, tool.url, json=dict(arguments), timeout=run.remaining()
                )
        except OutboundRefused as refused:
            raise ToolError(f"HTTP tool {tool.name} refused: {refused.message}") from None
        except httpx.TimeoutException:
            return f"error: {tool.name} did not answer in time"
        except httpx.HTTPError as exc:
            return f"error: {tool.name} unreachable ({type(exc).__name__})"
        if response.status_code >= 400:
            return f"error: {tool.name} answered HTTP {response.status_code}: {response.text[:500]}"
        return response.text

    async def _mcp_tool(self, tool: McpTool, arguments: Mapping[str, Any], run: Run) -> str:
        guard = self.providers.guard
        try:
            # Checked here for a clear message; the guarded client checks every connection.
            await guard.check(tool.server_url)
        except OutboundRefused as refused:
            raise ToolError(f"MCP tool {tool.tool} refused: {refused.message}") from None
        try:
            async with (
                asyncio.timeout(run.remaining()),
                guarded_httpx2_client(guard, timeout=run.remaining()) as http,
                McpClient(streamable_http_client(tool.server_url, http_client=http)) as client,
            ):
                result = await client.call_tool(tool.tool, dict(arguments))
        except TimeoutError:
            raise
        except GatewayError:
            raise
        except Exception as exc:  # the SDK raises many kinds; the model sees a short reason
            raise ToolError(
                f"MCP tool {tool.tool} at {tool.server_url} failed: {type(exc).__name__}"
            ) from None
        texts = [getattr(block, "text", "") for block in getattr(result, "content", [])]
        prefix = "error: " if getattr(result, "isError", False) else ""
        return prefix + "\n".join(t for t in texts if t)


@dataclass
class PatternContext:
    """What a pattern gets: a way to ask agents inside the pipeline's run."""

    executor: Executor
    deployments: Deployments
    pipeline: PipelineConfig
    run: Run

    async def ask(self, agent_name: str, text: str) -> str:
        """One step: the original caller must be allowed to invoke the step's agent."""
        agent = self.deployments.agent(agent_name)
        await self.run.authorize(f"pipeline {self.pipeline.name}", agent_name)
        return await self.executor.call_agent(self.deployments, agent, text, self.run)
