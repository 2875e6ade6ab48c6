"""What one gateway process holds, and a call's life after its decision: `GatewayState`.

`execute` awaits a run and, however it ends (a result, a `GatewayError`, a cut stream's
cancellation), `finish` records its execution and settles what it used with the sidecar
(only when the signed decision says something was reserved). `deployments_for` is where a
shared gateway picks the decision's organisation's deployments; `nested` is how a call's
nested agent and connector calls are asked of the sidecar as the original caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
from policy.runtime import tracing

from gateways.auth import Decision, DecisionVerifier
from gateways.deployments import DeploymentError, Deployments, DeploymentSource
from gateways.errors import Forbidden, GatewayError
from gateways.executions import Execution, ExecutionRecorder, Settler
from gateways.executor import Executor, Run, RunResult
from gateways.mcp_server import ask_sidecar
from gateways.nested import NestedAuthorizer
from gateways.settings import GatewaySettings
from gateways.tenancy import SharedDeploymentSource, TenantRecorders, check_namespace


@dataclass
class GatewayState:
    settings: GatewaySettings
    source: DeploymentSource
    executor: Executor
    recorder: ExecutionRecorder
    settler: Settler
    verifier: DecisionVerifier
    http: httpx.AsyncClient
    # A shared platform gateway (gateways/tenancy.py): executions by organisation.
    tenant_recorders: TenantRecorders | None = None

    def deployments(self) -> Deployments:
        return self.source.current()

    def deployments_for(self, decision: Decision, path: str) -> Deployments:
        """The deployments of the decision's organisation (one organisation's, unless shared)."""
        if isinstance(self.source, SharedDeploymentSource):
            check_namespace(path, decision.organization)
            deployments = self.source.for_organization(decision.organization)
            if deployments.organization_id != decision.organization:  # provider keys follow it
                raise Forbidden("the deployments served are not the decision's organisation's")
            return deployments
        return self.source.current()

    def organization(self) -> str | None:
        if isinstance(self.source, SharedDeploymentSource):
            return None  # any served organisation's decision; its deployments only
        try:
            return self.deployments().organization_id
        except DeploymentError:
            return None

    async def may_invoke(self, authorization: str | None, agent: str) -> bool:
        decision_id = await ask_sidecar(
            self.http,
            self.settings.sidecar_url,
            authorization,
            agent,
            self.settings.gateway_token.get_secret_value(),
        )
        if decision_id:  # the check reserved the ceiling; a listing uses nothing
            self.settler.settle(decision_id, {"cost_usd": 0.0, "tokens": 0.0, "executions": 0})
        return decision_id is not None

    def nested(
        self, authorization: str | None, decision: Decision, approval: str | None = None
    ) -> NestedAuthorizer:
        """Nested calls of this request are asked of the sidecar as its caller (nested.py)."""
        return NestedAuthorizer(
            self.http,
            self.settings.sidecar_url,
            self.settings.gateway_token.get_secret_value(),
            self.settler,
            authorization=authorization,
            principal=decision.principal,
            channel=decision.channel,
            approval=approval,
        )

    async def run_agent(
        self,
        deployments: Deployments,
        name: str,
        value: Any,
        decision: Decision,
        channel: str,
        authorization: str | None,
        approval: str | None = None,
    ) -> Any:
        """Run an agent for the MCP server; `approval` is a grant for a held connector call
        of a previous try (`Kaizen-Nested-Approval`, as on the HTTP routes)."""
        run = self.executor.new_run(deployments.agent(name))
        run.nested = self.nested(authorization, decision, approval)
        work = self.executor.invoke_agent(deployments, name, value, run=run)
        result, error, _ = await self.execute("agent", name, decision, channel, run, work)
        if error is not None:
            raise error
        assert result is not None
        return result.output

    async def execute(
        self,
        kind: str,
        name: str,
        decision: Decision,
        channel: str,
        run: Run,
        work: Awaitable[RunResult],
    ) -> tuple[RunResult | None, GatewayError | None, Execution]:
        """Await a run and settle + record it however it ends: a result, a GatewayError
        (returned), or anything else (a cut stream's cancellation, a bug: re-raised)."""
        started = time.perf_counter()
        try:
            result = await work
        except GatewayError as exc:
            return None, exc, self.finish(kind, name, decision, channel, started, run, exc)
        except BaseException as exc:
            self.finish(kind, name, decision, channel, started, run, exc)
            raise
        return result, None, self.finish(kind, name, decision, channel, started, run, None)

    def finish(
        self,
        kind: str,
        name: str,
        decision: Decision,
        channel: str,
        started: float,
        run: Run,
        error: BaseException | None,
    ) -> Execution:
        """Settle what the run used with the sidecar and record the execution."""
        message = None
        if isinstance(error, GatewayError):
            message = error.message
        elif isinstance(error, asyncio.CancelledError):
            message = "cancelled: the caller went away before the run ended"
        elif error is not None:
            message = type(error).__name__
        execution = Execution.new(
            principal=decision.principal,
            kind=kind,
            name=name,
            channel=channel,
            status="failed" if error is not None else "succeeded",
            tokens_in=run.usage.input_tokens,
            tokens_out=run.usage.output_tokens,
            cost_usd=round(run.cost_usd, 8),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            error=message,
            decision_id=decision.decision_id,
        )
        tracing.annotate_decision(decision.decision_id, "allow", decision.organization, None)
        if self.tenant_recorders is not None:
            self.tenant_recorders.record(execution, decision.organization)
        else:
            self.recorder.record(execution)
        if decision.reserved:  # nothing reserved (the signed header says so): nothing to settle
            self.settler.settle(decision.decision_id, run.settlement())
        return execution
