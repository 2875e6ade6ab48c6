"""The gateway app end to end over real HTTP, with a real signed bundle in static mode.

Real parts: the gateway (uvicorn, FastAPI, the official `mcp` SDK on both sides), a bundle
built and signed here with policy.compile.compiler/bundle and a fresh Ed25519 key, the fake LLM
server speaking the OpenAI wire protocol (tests/fake_llm.py). Decision headers are minted
here exactly as the sidecar mints them (docs/runtime-protocols.md).

Stand-ins, said plainly: a small local stand-in of the control plane's executions ingest
endpoint (the real control plane is used in the lead's end-to-end test), and a small
stand-in of the sidecar's HTTP `/authz` and `/settle` with a fixed allow-list (the real
sidecar is exercised in the end-to-end test with Envoy).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.app import create_app  # noqa: TID251  (the gateway under test)
from gateways.deployments import StaticDeploymentSource  # noqa: TID251
from gateways.settings import GatewaySettings  # noqa: TID251
from policy.bundles.bundle import build_bundle
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from tests.fake_llm import FakeLLM, Reply, ServedApp, running_fake_llm

TOKEN = "kgw_" + "t" * 40
ORG = "org-acme"
GATEWAY_ID = "gw-1"
ALLOWED = {"Bearer alice": {"support-bot", "demo-bot"}, "Bearer bob": {"demo-bot"}}
PRINCIPALS = {"Bearer alice": "user:alice@example.com", "Bearer bob": "user:bob@example.com"}


def route_of(action: str, resource: str, channel: str) -> tuple[str, str]:
    """The method and path the sidecar decided, as the proxy saw them."""
    name = resource.split(":", 1)[-1]
    if channel == "mcp" or resource == "mcp:server":
        return "POST", "/mcp"
    if action == "run":
        return "POST", f"/v1/pipelines/{name}/run"
    return "POST", f"/v1/agents/{name}/invoke"


def mint(
    action: str,
    resource: str,
    *,
    sub: str = "user:alice@example.com",
    org: str = ORG,
    channel: str = "api",
    ttl: int = 30,
    iat: int | None = None,
    token: str = TOKEN,
    body: bytes = b"",
    method: str | None = None,
    path: str | None = None,
    decision_id: str | None = None,
    rsv: Any = None,
) -> tuple[str, str]:
    """(decision_id, x-kaizen-decision) as the sidecar signs them on allow: bound to the
    route's method and path and to `body`, single use."""
    key = hmac.new(token.encode(), b"kaizen-decision-v1", hashlib.sha256).digest()
    now = int(time.time()) if iat is None else iat
    decision_id = decision_id or uuid.uuid4().hex
    route_method, route_path = route_of(action, resource, channel)
    claims = {
        "decision_id": decision_id,
        "jti": decision_id,
        "sub": sub,
        "org": org,
        "roles": ["agent-user"],
        "action": action,
        "resource": resource,
        "channel": channel,
        "method": method or route_method,
        "path": path or route_path,
        "bh": hashlib.sha256(body).hexdigest(),
        "iat": now,
        "exp": now + ttl,
    }
    if rsv is not None:  # as sidecars since 2026-12-04 sign it; absent: an older sidecar
        claims["rsv"] = rsv
    return decision_id, jwt.encode(claims, key, algorithm="HS256")


UNSIGNED = "unsigned-for-test:"


async def sign_at_send(request: httpx.Request) -> None:
    """An httpx hook standing in for the sidecar: a header made by `headers()` is signed
    for the request actually sent (its body), as the sidecar signs what it decided."""
    value = request.headers.get("x-kaizen-decision", "")
    if value.startswith(UNSIGNED):
        spec = json.loads(value[len(UNSIGNED) :])
        body = request.content
        token = mint(spec.pop("action"), spec.pop("resource"), body=body, **spec)[1]
        request.headers["x-kaizen-decision"] = token


def agent_doc(name: str, spec: dict[str, Any], gateways: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kaizen.studio/v1",
        "kind": "Agent",
        "metadata": {"name": name, "description": f"The {name}"},
        "spec": spec,
        "gateways": gateways,
    }


class Standins:
    """Executions ingest (control plane) and /authz + /settle (sidecar), recording calls."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.settled: list[dict[str, Any]] = []
        self.nested: list[tuple[str, str]] = []  # (channel, agent) of nested checks
        self.fail_ingest = 0
        self.ingest_calls = 0

    async def ingest(self, request: Request) -> Response:
        self.ingest_calls += 1
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"code": "unauthenticated"}}, 401)
        if self.fail_ingest > 0:
            self.fail_ingest -= 1
            return JSONResponse({"error": {"code": "unavailable"}}, 503)
        body = await request.json()
        duplicates = 0
        for record in body["executions"]:
            duplicates += record["id"] in self.executions
            self.executions[record["id"]] = record
        return JSONResponse(
            {"accepted": len(body["executions"]) - duplicates, "duplicates": duplicates}
        )

    async def authz(self, request: Request) -> Response:
        # The gateway names the original request only with its credential (the sidecar
        # believes X-Original-* from its proxy or the gateway, nobody else).
        assert request.headers["x-kaizen-gateway-token"] == TOKEN
        uri = request.headers["x-original-uri"]
        if uri == "/mcp":  # tools/list: may the caller call this tool?
            tool = json.loads(await request.body())["params"]["name"]
        else:  # a nested call: an agent's agent tool or a pipeline step
            match = re.fullmatch(r"/v1/agents/([^/]+)/invoke", uri)
            assert match is not None, uri
            tool = match[1]
            self.nested.append((request.headers["x-kaizen-channel"], tool))
        authorization = request.headers.get("authorization", "")
        if tool not in ALLOWED.get(authorization, set()):
            return JSONResponse({"outcome": "deny", "reasons": [f"no permission for {tool}"]}, 403)
        return JSONResponse(
            {"outcome": "allow"},
            headers={
                "x-kaizen-decision-id": "check-" + tool,
                "x-kaizen-principal": PRINCIPALS[authorization],
            },
        )

    async def settle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"code": "unauthenticated"}}, 401)
        self.settled.append(await request.json())
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/executions/ingest", self.ingest, methods=["POST"]),
                Route("/authz", self.authz, methods=["POST"]),
                Route("/settle", self.settle, methods=["POST"]),
            ]
        )

    def execution(self, decision_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in list(self.executions.values()):
                if record["decision_id"] == decision_id:
                    return record
            time.sleep(0.02)
        raise AssertionError(f"no execution recorded for {decision_id}")

    def settlement(self, decision_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in list(self.settled):
                if record["decision_id"] == decision_id:
                    return record
            time.sleep(0.02)
        raise AssertionError(f"no settlement for {decision_id}")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture(scope="module")
def standins() -> Iterator[Standins]:
    standins = Standins()
    served = ServedApp(standins.app(), lifespan="off")
    standins.url = served.url  # type: ignore[attr-defined]
    yield standins
    served.stop()


@pytest.fixture(scope="module")
def gateway(
    fake: FakeLLM, standins: Standins, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    model = {"provider": "openai", "name": "m-support", "base_url": fake.openai_url}
    agents = {
        "support-bot": agent_doc(
            "support-bot",
            {"model": model, "system_prompt": "Be kind.", "input_schema": {"type": "string"}},
            [GATEWAY_ID],
        ),
        "demo-bot": agent_doc(
            "demo-bot", {"model": {"provider": "demo", "name": "demo"}}, [GATEWAY_ID]
        ),
        "slow-bot": agent_doc(
            "slow-bot",
            {"model": {**model, "name": "m-slow"}, "limits": {"timeout_seconds": 0.5}},
            [GATEWAY_ID],
        ),
        "elsewhere": agent_doc(
            "elsewhere", {"model": {"provider": "demo", "name": "demo"}}, ["gw-2"]
        ),
    }
    pipelines = {
        "chain": {
            "kind": "Pipeline",
            "metadata": {"name": "chain"},
            "spec": {"pattern": "sequential", "agents": ["support-bot", "demo-bot"]},
            "gateways": [GATEWAY_ID],
        }
    }
    pem, jwks = generate_ed25519("k1")
    compiled = compile_policy(
        PolicySet.from_documents([]),
        CompileContext(organization_id=ORG, jwks=jwks, agents=agents, pipelines=pipelines),
    )
    bundle = build_bundle(
        compiled, revision=7, signing_key=load_private_key(pem), kid="k1", scope=ORG
    )
    home = tmp_path_factory.mktemp("gateway")
    (home / "bundle.tar.gz").write_bytes(bundle)
    (home / "jwks.json").write_text(json.dumps(jwks))
    url = standins.url  # type: ignore[attr-defined]
    settings = GatewaySettings(
        gateway_token=TOKEN,
        gateway_id=GATEWAY_ID,
        control_plane_url=url,
        sidecar_url=url,
        gateway_bundle=home / "bundle.tar.gz",
        gateway_jwks=home / "jwks.json",
        gateway_prices='{"m-support": [1000, 2000]}',
        outbound_allow_cidrs="127.0.0.1/32",  # the fake LLM listens there
        gateway_mcp_allowed_origins="https://studio.example.com, http://localhost:5173/",
    )
    assert settings.gateway_bundle is not None
    assert settings.gateway_jwks is not None
    source = StaticDeploymentSource(
        settings.gateway_bundle, settings.gateway_jwks, gateway_id=GATEWAY_ID
    )
    served = ServedApp(create_app(settings, source))
    yield served.url
    served.stop()


@pytest.fixture
async def client(gateway: str, fake: FakeLLM) -> AsyncIterator[httpx.AsyncClient]:
    fake.reset()
    hooks = {"request": [sign_at_send]}
    async with httpx.AsyncClient(base_url=gateway, timeout=10, event_hooks=hooks) as http:
        yield http


def headers(action: str, resource: str, **kwargs: Any) -> tuple[str, dict[str, str]]:
    """A decision header for the next request of a client with `sign_at_send`."""
    decision_id = uuid.uuid4().hex
    spec = {"action": action, "resource": resource, "decision_id": decision_id, **kwargs}
    return decision_id, {"x-kaizen-decision": UNSIGNED + json.dumps(spec)}


async def test_invoke_records_the_execution_and_settles(
    client: httpx.AsyncClient, fake: FakeLLM, standins: Standins
) -> None:
    fake.reset(lambda m, msgs: Reply("Happy to help!", input_tokens=100, output_tokens=20))
    decision_id, h = headers("invoke", "agent:support-bot", channel="cli")
    response = await client.post("/v1/agents/support-bot/invoke", json={"input": "hi"}, headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"] == "Happy to help!"
    assert body["usage"] == {"input_tokens": 100, "output_tokens": 20}
    assert body["cost_usd"] == pytest.approx(0.14)  # 100 * 1000/1M + 20 * 2000/1M
    assert fake.requests[-1]["messages"][0] == {"role": "system", "content": "Be kind."}
    record = standins.execution(decision_id)
    assert record["id"] == body["execution_id"]
    assert record["principal"] == "user:alice@example.com"
    assert (record["kind"], record["name"], record["channel"]) == ("agent", "support-bot", "cli")
    assert (record["status"], record["tokens_in"], record["tokens_out"]) == ("succeeded", 100, 20)
    settled = standins.settlement(decision_id)
    assert settled["actual"] == {"cost_usd": pytest.approx(0.14), "tokens": 120, "executions": 1}


async def test_a_call_that_reserved_nothing_is_not_settled(
    client: httpx.AsyncClient, fake: FakeLLM, standins: Standins
) -> None:
    """The sidecar's signed `rsv: false` spares the sidecar a /settle that could only
    answer 404; `rsv: true` and a header without it (an older sidecar) are settled."""
    fake.reset(lambda m, msgs: Reply("ok", input_tokens=1, output_tokens=1))
    ids = {}
    for name, rsv in (("nothing", False), ("reserved", True), ("unsaid", None)):
        decision_id, h = headers("invoke", "agent:support-bot", rsv=rsv)
        ids[name] = decision_id
        response = await client.post(
            "/v1/agents/support-bot/invoke", json={"input": "hi"}, headers=h
        )
        assert response.status_code == 200, response.text
        standins.execution(decision_id)  # recorded either way
    # Settles are sent in call order; once the last two have arrived, the first would have.
    standins.settlement(ids["reserved"])
    standins.settlement(ids["unsaid"])
    settled = {record["decision_id"] for record in standins.settled}
    assert ids["nothing"] not in settled


async def test_a_malformed_reservation_claim_is_refused(client: httpx.AsyncClient) -> None:
    _, h = headers("invoke", "agent:support-bot", rsv="no")  # signed, but not a boolean
    response = await client.post("/v1/agents/support-bot/invoke", json={"input": "hi"}, headers=h)
    assert response.status_code == 401
    assert "malformed" in response.text


async def test_streaming_with_accept_or_stream_flag(
    client: httpx.AsyncClient, fake: FakeLLM
) -> None:
    fake.reset(lambda m, msgs: Reply("streamed words arrive"))
    for extra_headers, body in (
        ({"accept": "text/event-stream"}, {"input": "hi"}),
        ({}, {"input": "hi", "stream": True}),
    ):
        _, h = headers("invoke", "agent:support-bot")
        async with client.stream(
            "POST", "/v1/agents/support-bot/invoke", json=body, headers={**h, **extra_headers}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line async for line in response.aiter_lines() if line.startswith("data:")]
        deltas = [json.loads(e[5:])["text"] for e in events[:-1]]
        done = json.loads(events[-1][5:])
        assert "".join(deltas) == "streamed words arrive"
        assert done["output"] == "streamed words arrive"


async def test_pipeline_run(client: httpx.AsyncClient, fake: FakeLLM, standins: Standins) -> None:
    fake.reset(lambda m, msgs: Reply("draft answer"))
    decision_id, h = headers("run", "pipeline:chain")
    h["authorization"] = "Bearer alice"
    standins.nested.clear()
    response = await client.post("/v1/pipelines/chain/run", json={"input": "question"}, headers=h)
    assert response.status_code == 200, response.text
    assert response.json()["output"].endswith("You said: draft answer")
    assert response.json()["steps"] == 2
    assert standins.execution(decision_id)["kind"] == "pipeline"
    # Each step was asked of the sidecar as the caller, and its reservation settled at zero.
    assert standins.nested == [("api", "support-bot"), ("api", "demo-bot")]
    assert standins.settlement("check-demo-bot")["actual"] == {
        "cost_usd": 0.0,
        "tokens": 0.0,
        "executions": 0,
    }


async def test_pipeline_step_to_an_agent_the_caller_may_not_invoke_is_refused(
    client: httpx.AsyncClient, fake: FakeLLM, standins: Standins
) -> None:
    fake.reset(lambda m, msgs: Reply("draft answer"))
    decision_id, h = headers("run", "pipeline:chain", sub="user:bob@example.com")
    h["authorization"] = "Bearer bob"  # bob may invoke demo-bot, not support-bot
    response = await client.post("/v1/pipelines/chain/run", json={"input": "question"}, headers=h)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "pipeline chain calls agent support-bot" in error["message"]
    assert "no permission for support-bot" in error["message"]
    assert fake.requests == []  # refused before any model call
    assert standins.execution(decision_id)["status"] == "failed"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: {}, "missing x-kaizen-decision"),
        (lambda: headers("invoke", "agent:support-bot", token="kgw_forged")[1], "not valid"),
        (lambda: headers("invoke", "agent:support-bot", iat=int(time.time()) - 60)[1], "expired"),
        (lambda: headers("invoke", "agent:demo-bot")[1], "issued for another request"),
        (lambda: headers("run", "agent:support-bot")[1], "issued for another request"),
        (
            lambda: headers("invoke", "agent:support-bot", org="org-other")[1],
            "another organisation",
        ),
        (lambda: headers("invoke", "agent:support-bot", ttl=3600)[1], "longer than allowed"),
        (lambda: {"x-kaizen-decision": "garbage"}, "not valid"),
    ],
)
async def test_calls_without_a_valid_decision_header_are_refused(
    client: httpx.AsyncClient, fake: FakeLLM, make: Any, message: str
) -> None:
    response = await client.post(
        "/v1/agents/support-bot/invoke", json={"input": "x"}, headers=make()
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert message in response.json()["error"]["message"]
    assert fake.requests == []


async def test_bad_input_is_a_clean_4xx(client: httpx.AsyncClient) -> None:
    for content, field in (
        (b"not json", None),
        (b'{"inpt": 1}', "input"),
        (b'{"input": 5}', "input"),
    ):
        _, h = headers("invoke", "agent:support-bot")  # a decision admits one request
        response = await client.post("/v1/agents/support-bot/invoke", content=content, headers=h)
        assert response.status_code == 422, response.text
        if field:
            assert response.json()["error"]["details"]["field"] == field
    for name in ("nobody", "elsewhere"):  # not in the bundle / deployed to another gateway
        _, h = headers("invoke", f"agent:{name}")
        response = await client.post(f"/v1/agents/{name}/invoke", json={"input": "x"}, headers=h)
        assert response.status_code == 404


async def test_provider_failures_are_502_504_and_failed_executions(
    client: httpx.AsyncClient, fake: FakeLLM, standins: Standins
) -> None:
    fake.reset(lambda m, msgs: Reply(mode="garbage"))
    decision_id, h = headers("invoke", "agent:support-bot")
    response = await client.post("/v1/agents/support-bot/invoke", json={"input": "x"}, headers=h)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_error"
    record = standins.execution(decision_id)
    assert record["status"] == "failed"
    assert "not JSON" in record["error"]

    fake.reset(lambda m, msgs: Reply("late", delay=3))
    decision_id, h = headers("invoke", "agent:slow-bot")
    started = time.monotonic()
    response = await client.post("/v1/agents/slow-bot/invoke", json={"input": "x"}, headers=h)
    assert response.status_code == 504
    assert time.monotonic() - started < 2.5
    assert "timeout_seconds=0.5" in response.json()["error"]["message"]
    assert standins.execution(decision_id)["status"] == "failed"


async def test_ingest_is_retried_until_acknowledged(
    client: httpx.AsyncClient, standins: Standins
) -> None:
    standins.fail_ingest = 2
    decision_id, h = headers("invoke", "agent:demo-bot")
    response = await client.post("/v1/agents/demo-bot/invoke", json={"input": "x"}, headers=h)
    assert response.status_code == 200
    assert standins.execution(decision_id, timeout=10)["status"] == "succeeded"
    assert standins.fail_ingest == 0


async def test_protected_resource_metadata(
    client: httpx.AsyncClient, gateway: str, standins: Standins
) -> None:
    response = await client.get("/.well-known/oauth-protected-resource")
    assert response.status_code == 200
    assert response.json()["resource"] == gateway + "/mcp"
    # The organisation's own issuer (the control plane serves one per organisation).
    issuers = response.json()["authorization_servers"]
    assert issuers == [f"{standins.url}/oauth/{ORG}"]  # type: ignore[attr-defined]
    # The scopes an MCP client asks for here: not pipelines:run, which MCP never uses.
    assert response.json()["scopes_supported"] == ["mcp:connect", "mcp:list", "agents:invoke"]


# --- MCP ---------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(gateway: str, bearer: str, sub: str) -> AsyncIterator[Client]:
    """The official SDK client behind a stand-in of Envoy + sidecar that signs each message."""

    async def proxy(request: httpx2.Request) -> None:
        message = json.loads(request.content or b"{}")
        method = message.get("method", "")
        if method == "tools/call":
            action, resource = "invoke", f"agent:{message['params']['name']}"
        elif method in ("tools/list", "resources/list", "prompts/list"):
            action, resource = "list", "mcp:server"
        else:
            action, resource = "connect", "mcp:server"
        request.headers["x-kaizen-decision"] = mint(
            action, resource, sub=sub, channel="mcp", body=request.content
        )[1]
        request.headers["authorization"] = bearer

    async with (
        httpx2.AsyncClient(event_hooks={"request": [proxy]}, timeout=10) as http,
        Client(streamable_http_client(gateway + "/mcp", http_client=http)) as client,
    ):
        yield client


async def test_mcp_lists_only_permitted_tools_and_calls_them(
    gateway: str, fake: FakeLLM, standins: Standins
) -> None:
    fake.reset(lambda m, msgs: Reply("mcp answer"))
    async with mcp_client(gateway, "Bearer alice", "user:alice@example.com") as alice:
        tools = {tool.name for tool in (await alice.list_tools()).tools}
        assert tools == {"support-bot", "demo-bot"}
        result = await alice.call_tool("support-bot", {"input": "hello"})
        assert not result.is_error
        assert result.content[0].text == "mcp answer"
    async with mcp_client(gateway, "Bearer bob", "user:bob@example.com") as bob:
        assert {tool.name for tool in (await bob.list_tools()).tools} == {"demo-bot"}

    def recorded() -> bool:  # executions are shipped in batches, a moment after the call
        records = [r for r in standins.executions.values() if r["channel"] == "mcp"]
        return any(r["name"] == "support-bot" and r["status"] == "succeeded" for r in records)

    for _ in range(250):
        if recorded():
            break
        await asyncio.sleep(0.02)
    assert recorded()


async def test_mcp_refuses_bypass_and_answers_bad_json_rpc(client: httpx.AsyncClient) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "demo-bot"}}
    response = await client.post("/mcp", json=call)
    assert response.status_code == 401
    _, h = headers("invoke", "agent:support-bot", channel="mcp")
    response = await client.post("/mcp", json=call, headers=h)  # signed for another tool
    assert response.status_code == 401
    _, h = headers("connect", "mcp:server", channel="mcp")
    response = await client.post("/mcp", content=b"{nope", headers=h)
    assert response.json()["error"]["code"] == -32700
    response = await client.post("/mcp", json=[call], headers=h)
    assert response.json()["error"]["code"] == -32600
    response = await client.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "no/such"}, headers=h
    )
    assert response.json()["error"]["code"] == -32601


async def test_mcp_refuses_a_foreign_browser_origin(client: httpx.AsyncClient) -> None:
    """Streamable HTTP's DNS-rebinding rule: a browser Origin must be one the operator
    allowed; no Origin (an IDE, a CLI, an agent framework) is served."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for origin in ("https://evil.example", "null", "https://studio.example.com.evil.example"):
        _, h = headers("list", "mcp:server", channel="mcp")
        response = await client.post("/mcp", json=call, headers={**h, "Origin": origin})
        assert response.status_code == 403, origin
        assert "KAIZEN_GATEWAY_MCP_ALLOWED_ORIGINS" in response.json()["error"]["message"]
    for origin in ("https://studio.example.com", "http://LOCALHOST:5173", None):
        extra = {"Origin": origin} if origin else {}
        _, h = headers("list", "mcp:server", channel="mcp")  # one request per decision
        response = await client.post("/mcp", json=call, headers={**h, **extra})
        assert response.status_code == 200, (origin, response.text)
