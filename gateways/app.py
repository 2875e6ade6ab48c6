"""The gateway's FastAPI app: agents and pipelines over HTTP API (JSON or SSE) and MCP.

Routes (CONTRACTS.md "Gateway routes"): `POST /v1/agents/{name}/invoke`,
`POST /v1/pipelines/{name}/run`, `POST /mcp`; plus `GET /healthz` and RFC 9728
`GET /.well-known/oauth-protected-resource[/mcp]`. Every `/v1/…` and `/mcp` request must
carry the sidecar's signed decision header (gateways/auth.py). After each call the real
cost is settled with the sidecar and an execution is recorded (gateways/executions.py).
Errors are `{"error": {"code", "message", "details"}}`; bad input is never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from policy.runtime import tracing
from policy.runtime.tracing_asgi import TracingMiddleware
from starlette.routing import Match, Route
from starlette.types import Scope

from gateways.auth import HEADER, Decision, DecisionVerifier
from gateways.deployments import DeploymentError, Deployments, DeploymentSource
from gateways.errors import GatewayError, InvalidInput
from gateways.executions import Execution, ExecutionRecorder, OperatorSession, Settler
from gateways.executor import Executor, RunResult
from gateways.mcp_server import (
    McpEndpoint,
    allowed_origins,
    build_server,
    session_manager,
)
from gateways.nested import NESTED_APPROVAL_HEADER, NestedAuthorizer
from gateways.providers import PriceTable, ProviderRegistry, SecretResolver
from gateways.providers.http import new_client
from gateways.providers.secrets import resolver_for
from gateways.providers.tenant_secrets import TenantSecrets, tenant_secrets_for
from gateways.settings import GatewaySettings
from gateways.state import GatewayState
from gateways.tenancy import (
    NoSharedSecrets,
    SharedDeploymentSource,
    TenantRecorders,
)

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_app(
    settings: GatewaySettings,
    source: DeploymentSource,
    *,
    secrets: SecretResolver | None = None,
    tenants: TenantSecrets | None = None,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    client = http or new_client()
    prices = PriceTable.from_json(settings.gateway_prices)
    token = settings.gateway_token.get_secret_value()
    shared = isinstance(source, SharedDeploymentSource)
    if shared:  # each organisation's provider keys; no connector password, no fallback
        secrets, tenants = NoSharedSecrets(), tenants or tenant_secrets_for(settings)
    else:
        tenants = None
    registry = ProviderRegistry(
        secrets or resolver_for(settings), settings.outbound_guard, tenants=tenants
    )
    operator = OperatorSession()  # ingest and /settle: the operator's own services
    state = GatewayState(
        settings=settings,
        source=source,
        executor=Executor(registry, prices),
        recorder=ExecutionRecorder(
            settings.control_plane_url,
            token,
            operator,
            batch=settings.gateway_ingest_batch,
            capacity=settings.gateway_ingest_buffer,
        ),
        settler=Settler(settings.sidecar_url, token, operator),
        verifier=DecisionVerifier(token),
        http=client,
        tenant_recorders=TenantRecorders(settings.control_plane_url, token, operator)
        if shared
        else None,
    )
    manager = session_manager(build_server(state))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await source.start()
        await state.recorder.start()
        if state.tenant_recorders is not None:
            await state.tenant_recorders.start()
        try:
            async with manager.run():
                yield
        finally:
            await state.settler.stop()
            await state.recorder.stop()
            if state.tenant_recorders is not None:
                await state.tenant_recorders.stop()
            await operator.close()
            await source.stop()
            await state.executor.providers.aclose()
            if http is None:
                await client.aclose()
            tracing.flush()  # the last calls' spans, the final ingest's included

    app = FastAPI(
        title="Kaizen Studio gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = state
    if tracing.ENABLED:  # decided once, when the app is built (policy/runtime/tracing.py)
        app.add_middleware(TracingMiddleware)
    mcp_endpoint = McpEndpoint(
        manager,
        state.verifier,
        state.organization,
        allowed_origins(settings.gateway_mcp_allowed_origins),
    )
    if not shared:  # MCP is not offered on a shared gateway (ADR 0012)
        app.router.routes.append(Route("/mcp", endpoint=mcp_endpoint, methods=None))

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(DeploymentError)
    async def not_ready(_request: Request, exc: DeploymentError) -> JSONResponse:
        body = {"error": {"code": "unavailable", "message": str(exc), "details": None}}
        return JSONResponse(body, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()
        ]
        return _error(InvalidInput("invalid request", details))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if isinstance(source, SharedDeploymentSource):
            summary = source.summary()
            if summary is None:
                return JSONResponse({"status": "unavailable", "reason": "no organisation"}, 503)
            return JSONResponse(summary)
        try:
            deployments = state.deployments()
        except DeploymentError as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, 503)
        return JSONResponse(
            {
                "status": "ok",
                "bundle_revision": deployments.bundle_revision,
                "agents": len(deployments.agents),
                "pipelines": len(deployments.pipelines),
                "executions_backlog": state.recorder.backlog,
            }
        )

    @app.get("/.well-known/oauth-protected-resource")
    @app.get("/.well-known/oauth-protected-resource/mcp")
    async def protected_resource(request: Request) -> JSONResponse:
        """RFC 9728, public (Envoy skips ext_authz for exactly these paths): this gateway's
        MCP resource and its organisation's authorization server (each organisation is its
        own issuer, `<control plane>/oauth/<organization id>`)."""
        base = settings.gateway_public_url or str(request.base_url).rstrip("/")
        organization = state.deployments().organization_id  # none yet: 503 (not_ready)
        issuer = f"{settings.control_plane_url.rstrip('/')}/oauth/{organization}"
        return JSONResponse(
            {
                "resource": base.rstrip("/") + "/mcp",
                "authorization_servers": [issuer],
                "bearer_methods_supported": ["header"],
                # What an MCP client needs here (the sidecar's scope words, authn.py): the
                # SDK asks for exactly these, not every scope the issuer knows.
                "scopes_supported": ["mcp:connect", "mcp:list", "agents:invoke"],
                "resource_name": "Kaizen Studio gateway (MCP)",
                "resource_documentation": base.rstrip("/")
                + "/.well-known/oauth-protected-resource",
            },
            headers={"cache-control": "public, max-age=300"},
        )

    # The two call routes are plain Starlette routes: FastAPI's dependency solving and
    # parameter validation cost ~35 µs a call here for a path parameter that needs neither.
    async def invoke(request: Request) -> JSONResponse | StreamingResponse:
        name = request.path_params["name"]
        decision = state.verifier.verify(
            request.headers.get(HEADER),
            "invoke",
            f"agent:{name}",
            state.organization(),
            method=request.method,
            path=request.url.path,
            body=await request.body(),
        )
        body = await _json_body(request)
        deployments = state.deployments_for(decision, request.url.path)
        deployments.agent(name)
        wants_stream = body.get("stream") is True or "text/event-stream" in request.headers.get(
            "accept", ""
        )
        nested = state.nested(
            request.headers.get("authorization"),
            decision,
            request.headers.get(NESTED_APPROVAL_HEADER),
        )
        if wants_stream:
            return _stream(state, deployments, name, body["input"], decision, nested)
        run = state.executor.new_run(deployments.agent(name))
        run.nested = nested
        work = state.executor.invoke_agent(deployments, name, body["input"], run=run)
        result, error, execution = await state.execute(
            "agent", name, decision, decision.channel, run, work
        )
        if error is not None:
            return _error(error, execution.id)
        assert result is not None
        return JSONResponse(_success(result, execution))

    async def run_pipeline(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        decision = state.verifier.verify(
            request.headers.get(HEADER),
            "run",
            f"pipeline:{name}",
            state.organization(),
            method=request.method,
            path=request.url.path,
            body=await request.body(),
        )
        body = await _json_body(request)
        deployments = state.deployments_for(decision, request.url.path)
        run = state.executor.new_run(deployments.pipeline(name))
        run.nested = state.nested(
            request.headers.get("authorization"),
            decision,
            request.headers.get(NESTED_APPROVAL_HEADER),
        )
        work = state.executor.run_pipeline(deployments, name, body["input"], run=run)
        result, error, execution = await state.execute(
            "pipeline", name, decision, decision.channel, run, work
        )
        if error is not None:
            return _error(error, execution.id)
        assert result is not None
        return JSONResponse(_success(result, execution))

    # Under /o/{organization}/ too: a shared gateway's organisation namespace (the sidecar
    # checked it against the caller's credential; `deployments_for` against the decision).
    for prefix in ("", "/o/{organization}"):
        app.router.routes.append(
            _CallRoute(f"{prefix}/v1/agents/{{name}}/invoke", endpoint=invoke, methods=["POST"])
        )
        app.router.routes.append(
            _CallRoute(
                f"{prefix}/v1/pipelines/{{name}}/run", endpoint=run_pipeline, methods=["POST"]
            )
        )
    return app


class _CallRoute(Route):
    """A Starlette route that puts itself in the scope as FastAPI's routes do: the tracing
    middleware names a call's span by its template (`POST /v1/agents/{name}/invoke`)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput('request body must be JSON {"input": …}') from None
    if not isinstance(body, dict) or "input" not in body:
        raise InvalidInput("request body must be a JSON object with an input", {"field": "input"})
    unknown = set(body) - {"input", "stream"}
    if unknown:
        raise InvalidInput(
            f"unknown field(s): {', '.join(sorted(unknown))}", {"field": sorted(unknown)[0]}
        )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidInput("stream must be true or false", {"field": "stream"})
    return body


def _success(result: RunResult, execution: Execution) -> dict[str, Any]:
    return {
        "output": result.output,
        "execution_id": execution.id,
        "usage": {"input_tokens": execution.tokens_in, "output_tokens": execution.tokens_out},
        "cost_usd": execution.cost_usd,
        "steps": result.run.steps,
        "latency_ms": execution.latency_ms,
    }


def _error(exc: GatewayError, execution_id: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "error": {"code": exc.code, "message": exc.message, "details": exc.details}
    }
    if execution_id is not None:
        body["execution_id"] = execution_id
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, exc.status, headers=headers)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _stream(
    state: GatewayState,
    deployments: Deployments,
    name: str,
    value: Any,
    decision: Decision,
    nested: NestedAuthorizer,
) -> StreamingResponse:
    """`event: delta` {text} … then `event: done` {output, execution_id, …} or `event: error`."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def on_delta(text: str) -> None:
        await queue.put(_sse("delta", {"text": text}))

    async def work() -> None:
        run = state.executor.new_run(deployments.agent(name))
        run.nested = nested
        job = state.executor.invoke_agent(deployments, name, value, on_delta, run=run)
        try:
            # A cut stream cancels this task: execute() still settles what the run used.
            result, exc, execution = await state.execute(
                "agent", name, decision, decision.channel, run, job
            )
            if exc is not None:
                error = {"code": exc.code, "message": exc.message, "details": exc.details}
                await queue.put(_sse("error", {"error": error, "execution_id": execution.id}))
            else:
                assert result is not None
                await queue.put(_sse("done", _success(result, execution)))
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[bytes]:
        task = asyncio.create_task(work())
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
