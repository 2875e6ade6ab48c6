"""Milestone M4 end to end with every real part: a control-plane process (PostgreSQL +
Redis), `kaizen-studio sidecar` and `kaizen-studio gateway` both holding the gateway's
credential and following the control plane, and a real Envoy in front of the gateway.

An agent and a pipeline are designed and deployed through the control-plane API; the
deployment reaches the gateway in the signed bundle. They are called over the HTTP API,
the `kaizen-studio call` CLI and an MCP client from the official SDK, all through Envoy:
an allowed principal succeeds, another is denied (403), an unauthenticated call gets 401,
and a call straight to the gateway that bypasses Envoy is refused. The executions, the
decisions and the budget usage then appear in the control plane. Undeploying removes the
agent from the gateway.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:*", actions: [invoke]}
        - {resource: "pipeline:*", actions: [run]}
        - {resource: "mcp:*", actions: [connect, list]}
  bindings:
    - {subject: "user:%(email)s", role: agent-user}
    - {subject: "apikey:cli", role: agent-user}
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: org-daily, scope: org, metric: executions, limit: 1000, period: day}
"""
AGENTS = """\
kind: Agent
metadata: {name: support-bot, description: Answers support questions}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You are a helpful support agent.
  cost_estimate_usd: 0.001
---
kind: Agent
metadata: {name: summariser}
spec:
  model: {provider: demo, name: demo}
  system_prompt: Summarise.
"""
PIPELINE = """\
kind: Pipeline
metadata: {name: answer-and-summarise}
spec:
  pattern: sequential
  agents: [support-bot, summariser]
"""


def _eventually_or_none(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    return None


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    result = _eventually_or_none(check, timeout)
    if not result:
        pytest.fail(f"{what} did not happen within {timeout} s")
    return result


def _start_gateway(home: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    environ = procs.clean_env(KAIZEN_HOME=str(home), KAIZEN_GATEWAY_PORT=str(port), **env)
    return procs.spawn([str(procs.BIN / "kaizen-studio"), "gateway"], env=environ)


async def _mcp(url: str, authorization: str) -> tuple[set[str], str]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": authorization}, timeout=30) as http,
        Client(streamable_http_client(url + "/mcp", http_client=http)) as client,
    ):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("support-bot", {"input": "hello over MCP"})
        assert not result.is_error, result
        text = getattr(result.content[0], "text", "")
        return tools, text


def test_deploy_and_call_over_api_cli_and_mcp_through_envoy(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp = httpx.Client(base_url=shared_control_plane.url, timeout=30)
    request.addfinalizer(cp.close)
    email = f"owner-{secrets.token_hex(3)}@example.com"
    owner = cp.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": "M4"}
    ).json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}

    def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = cp.post(path, json=body, headers=admin)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    cli_key = created("/api/v1/api-keys", {"name": "cli", "role": "developer"})["key"]
    intruder_key = created("/api/v1/api-keys", {"name": "intruder", "role": "developer"})["key"]
    created("/api/v1/policies", {"source": POLICY % {"email": email}})
    created("/api/v1/policies/publish", {})
    created("/api/v1/agents", {"source": AGENTS})
    created("/api/v1/pipelines", {"source": PIPELINE})

    listen, admin_port, grpc_port, http_port, gateway_port = (procs.free_port() for _ in range(5))
    envoy = f"http://127.0.0.1:{listen}"
    gateway = created("/api/v1/gateways", {"name": "edge", "environment": "prod", "url": envoy})
    credential = {
        "KAIZEN_GATEWAY_TOKEN": gateway["credential"],
        "KAIZEN_CONTROL_PLANE_URL": shared_control_plane.url,
    }
    agent = created(
        "/api/v1/deployments", {"gateway_id": gateway["id"], "kind": "agent", "name": "support-bot"}
    )
    pipeline = created(
        "/api/v1/deployments",
        {"gateway_id": gateway["id"], "kind": "pipeline", "name": "answer-and-summarise"},
    )
    assert agent["endpoints"]["api"] == f"{envoy}/v1/agents/support-bot/invoke"

    gateway_process = _start_gateway(
        tmp_path / "gateway",
        gateway_port,
        KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
        KAIZEN_GATEWAY_PUBLIC_URL=envoy,
        **credential,
    )
    with (
        procs.running(gateway_process),
        procs.running(
            procs.start_sidecar(tmp_path / "sidecar", grpc_port, http_port, **credential)
        ),
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen, admin_port, grpc_port, gateway_port, sidecar_http=http_port
                ),
                tmp_path,
                admin_port,
            )
        ),
    ):
        direct = f"http://127.0.0.1:{gateway_port}"

        def serving() -> dict[str, Any] | None:
            try:
                health = httpx.get(f"{direct}/healthz", timeout=2)
            except httpx.TransportError:
                return None
            body = health.json()
            return body if health.status_code == 200 and body["pipelines"] == 1 else None

        if not _eventually_or_none(serving, 30):
            reason = httpx.get(f"{direct}/healthz", timeout=2).text
            procs.stop(gateway_process)
            pytest.fail(f"the gateway is not serving: {reason} {procs.output(gateway_process)}")
        health = serving()
        assert health is not None
        assert health["agents"] == 2  # the pipeline's agents ride along

        user = {"Authorization": f"Bearer {owner['access_token']}"}
        invoke = f"{envoy}/v1/agents/support-bot/invoke"
        # HTTP API: allowed, denied, unauthenticated, and around the proxy.
        answer = httpx.post(invoke, json={"input": "hello"}, headers=user, timeout=30)
        assert answer.status_code == 200, answer.text
        assert "demo provider" in json.dumps(answer.json())
        denied = httpx.post(
            invoke, json={"input": "hi"}, headers={"Authorization": f"Bearer {intruder_key}"}
        )
        assert denied.status_code == 403, denied.text
        assert httpx.post(invoke, json={"input": "hi"}).status_code == 401
        bypass = httpx.post(
            f"{direct}/v1/agents/support-bot/invoke", json={"input": "hi"}, headers=user
        )
        assert bypass.status_code == 401, bypass.text
        run = httpx.post(
            f"{envoy}/v1/pipelines/answer-and-summarise/run",
            json={"input": "hello"},
            headers=user,
            timeout=30,
        )
        assert run.status_code == 200, run.text

        # The CLI, as a user runs it.
        cli = subprocess.run(
            [str(procs.BIN / "kaizen-studio"), "call", "support-bot", "--input", "from the CLI"],
            env=procs.clean_env(KAIZEN_GATEWAY_URL=envoy, KAIZEN_API_KEY=cli_key),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert "demo provider" in cli.stdout
        ran = subprocess.run(
            [
                *(str(procs.BIN / "kaizen-studio"), "call", "answer-and-summarise"),
                *("--pipeline", "--input", "from the CLI"),
            ],
            env=procs.clean_env(KAIZEN_GATEWAY_URL=envoy, KAIZEN_API_KEY=cli_key),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr

        # MCP with the official SDK: the caller sees and calls the agents it may invoke.
        tools, text = asyncio.run(_mcp(envoy, f"Bearer {owner['access_token']}"))
        assert tools == {"support-bot", "summariser"}
        assert "demo provider" in text

        # The control plane has the executions and the decisions.
        def executions() -> list[dict[str, Any]]:
            page = cp.get("/api/v1/executions", params={"limit": 100}, headers=admin).json()
            return list(page["items"])

        records = _eventually(
            lambda: (found := executions()) and len(found) >= 5 and found, 30, "executions"
        )
        assert {(r["channel"], r["status"]) for r in records} >= {
            ("api", "succeeded"),
            ("cli", "succeeded"),
            ("mcp", "succeeded"),
        }

        # Shipped asynchronously and in batches: wait for each outcome, not for any page.
        def logged(principal: str, outcome: str) -> bool:
            page = cp.get("/api/v1/decisions", params={"limit": 100}, headers=admin).json()
            return any(
                (d["principal"], d["outcome"]) == (principal, outcome) for d in page["items"]
            )

        _eventually(lambda: logged(f"user:{email}", "allow"), 30, "the user's allowed call")
        _eventually(lambda: logged("apikey:intruder", "deny"), 30, "the denied call's decision")

        # The sidecar's budget counters reach the control plane with its heartbeat.
        def usage() -> float:
            items = cp.get("/api/v1/usage", params={"budget": "org-daily"}, headers=admin)
            return sum(u["used"] for u in items.json()["items"])

        _eventually(lambda: usage() >= 4, 30, "the budget usage report")

        # Undeploying reaches the gateway in the next revision (the pipeline too: it
        # would otherwise keep its agents served).
        for deployment in (pipeline, agent):
            deleted = cp.delete(f"/api/v1/deployments/{deployment['id']}", headers=admin)
            assert deleted.status_code == 204, deleted.text
        _eventually(
            lambda: (
                httpx.post(invoke, json={"input": "hi"}, headers=user, timeout=30).status_code
                == 404
            ),
            30,
            "the undeployed agent disappearing",
        )
