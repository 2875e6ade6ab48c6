"""Budgets a caller cannot talk down: what a call reserves comes from the server side.

Through the sidecar's real check path (`Authorizer.check` on the request as Envoy or nginx
describes it, reservations batched into the real Redis exactly as a sidecar worker does)
and the control plane's real deploy API (embedded and PostgreSQL stacks). The caller's
`X-Kaizen-Estimated-*` headers may raise what a call reserves, never lower or skip it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from authz_sidecar.authorizer import Authorizer  # noqa: TID251
from authz_sidecar.budgets import (  # noqa: TID251  (the sidecar under test)
    RedisBudgetBatch,
    RedisBudgetLedger,
    RedisReservationBook,
)
from authz_sidecar.engine_holder import EngineHolder  # noqa: TID251  (the sidecar under test)
from authz_sidecar.grants import (  # noqa: TID251  (the sidecar under test)
    InMemoryReplayGuard,
)
from authz_sidecar.mapping import HttpFacts  # noqa: TID251  (the sidecar under test)
from authz_sidecar.verdict import Verdict  # noqa: TID251  (the sidecar under test)
from policy.bundles.bundle import VerifiedBundle, load_bundle
from policy.bundles.gateway_binding import binding_of_credential
from policy.engine.budgets import BudgetKey, period_window
from policy.workloads import AgentConfig, CallBudget, ModelConfig
from tests.conftest import Account
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    AUDIENCE,
    GATEWAY_TOKEN,
    ISSUER,
    ORG,
    Keys,
    access_token,
    approval_grant,
    make_bundle,
    make_keys,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
OTHER_ORG = "org-globex"
CEILING_USD, CEILING_TOKENS = 0.01, 500
POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: caller
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:alice@example.com", role: caller}
    - {subject: "apikey:ci-bot", role: caller}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    require_approval contains "the deployer agent needs approval" if {
      input.resource.id == "agent:deployer"
    }
    deny contains "calls estimated over 0.5 USD are not allowed" if {
      input.context.estimated_cost_usd > 0.5
    }
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: bot-spend, scope: "agent:support-bot", metric: cost_usd, limit: 0.05, period: day}
    - {name: deployer-spend, scope: "agent:deployer", metric: cost_usd, limit: 0.015,
       soft_limit: 0.001, period: day}
    - {name: bot-tokens, scope: "agent:support-bot", metric: tokens, limit: 100000, period: day}
    - {name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 3, period: day}
    - {name: org-spend, scope: org, metric: cost_usd, limit: 100, period: day}
"""
AGENTS = {
    name: AgentConfig(
        name,
        ModelConfig("demo", "demo"),
        budget=CallBudget(max_cost_usd_per_call=CEILING_USD, max_tokens=CEILING_TOKENS),
    ).to_dict()
    for name in ("support-bot", "deployer")
}
# No spec.budget: its ceiling is limits.max_cost_usd (1 USD by default).
AGENTS["pricey-bot"] = AgentConfig("pricey-bot", ModelConfig("demo", "demo")).to_dict()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def prefix() -> str:
    return f"kaizen-test-budget-{secrets.token_hex(4)}:"


@pytest.fixture
def sync_redis(prefix: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    stale = list(client.scan_iter(f"{prefix}*"))
    if stale:
        client.delete(*stale)
    client.close()


def bundle(keys: Keys, organization: str = ORG) -> VerifiedBundle:
    raw = make_bundle(keys, organization=organization, policy=POLICY, agents=AGENTS)
    return load_bundle(raw, keys.jwks, scope=organization)


@asynccontextmanager
async def sidecar_worker(verified: VerifiedBundle, prefix: str) -> AsyncIterator[Authorizer]:
    """One sidecar worker as the runtime wires it with Redis: batched reservations,
    reservation records for /settle, the blocking ledger for settle and release, and its
    gateway's credential (which approval grants are bound to)."""
    ledger = RedisBudgetLedger.from_url(REDIS_URL, prefix)
    client = aioredis.Redis.from_url(REDIS_URL)
    holder = EngineHolder(
        ledger,
        issuer=ISSUER,
        audience=AUDIENCE,
        gateway_binding=binding_of_credential(GATEWAY_TOKEN),
    )
    holder.on_bundle(verified)
    authorizer = Authorizer(
        holder,
        replay_guard=InMemoryReplayGuard(),
        reservations=RedisReservationBook(client, prefix),
        budgets=RedisBudgetBatch(client, prefix),
    )
    try:
        yield authorizer
    finally:
        await authorizer.drain()
        ledger.client.close()
        await client.aclose()


def counter(client: redis.Redis, prefix: str, scope: str, metric: str, org: str = ORG) -> float:
    window = period_window("day", datetime.now(UTC))
    value = client.get(prefix + BudgetKey(org, scope, metric, window).redis_key)
    return float(value) if value is not None else 0.0


def invoke(
    authorization: str, agent: str = "support-bot", body: bytes = b"", **headers: str
) -> HttpFacts:
    return HttpFacts(
        "POST", f"/v1/agents/{agent}/invoke", {"authorization": authorization, **headers}, body
    )


def alice(keys: Keys) -> str:
    return f"Bearer {access_token(keys, ALICE)}"


async def checked(worker: Authorizer, facts: HttpFacts) -> Verdict:
    verdict = await worker.check(facts)
    await worker.drain()  # releases and reservation records are written off the response path
    return verdict


async def test_omitting_estimate_headers_to_reserve_nothing_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    async with sidecar_worker(bundle(keys), prefix) as worker:
        verdicts = [await checked(worker, invoke(alice(keys))) for _ in range(6)]
    # Each call reserved the agent's ceiling from the signed bundle: 5 x 0.01 fill 0.05.
    assert [v.status for v in verdicts] == [200] * 5 + [403]
    assert (
        "budget bot-spend (agent:support-bot cost_usd per day) exceeded"
        in (verdicts[-1].reasons[0])
    )
    assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == pytest.approx(0.05)
    tokens = counter(sync_redis, prefix, "agent:support-bot", "tokens")
    assert tokens == 5 * CEILING_TOKENS


async def test_lowering_the_estimate_below_the_ceiling_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    lowered = {"x-kaizen-estimated-cost": "0", "x-kaizen-estimated-tokens": "1"}
    async with sidecar_worker(bundle(keys), prefix) as worker:
        verdict = await checked(worker, invoke(alice(keys), **lowered))
    assert verdict.status == 200
    assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == CEILING_USD
    assert counter(sync_redis, prefix, "agent:support-bot", "tokens") == CEILING_TOKENS


async def test_a_raised_estimate_is_reserved_in_full(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    raised = {"x-kaizen-estimated-cost": "0.03", "x-kaizen-estimated-tokens": "2000"}
    async with sidecar_worker(bundle(keys), prefix) as worker:
        assert (await checked(worker, invoke(alice(keys), **raised))).status == 200
        too_much = {"x-kaizen-estimated-cost": "0.06"}
        over = await checked(worker, invoke(alice(keys), **too_much))
    assert over.status == 403  # 0.03 + 0.06 is over 0.05
    assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == pytest.approx(0.03)
    assert counter(sync_redis, prefix, "agent:support-bot", "tokens") == 2000


async def test_omitting_the_estimate_to_pass_a_cost_rule_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    async with sidecar_worker(bundle(keys), prefix) as worker:
        silent = await checked(worker, invoke(alice(keys), "pricey-bot"))
        lowered = await checked(
            worker, invoke(alice(keys), "pricey-bot", **{"x-kaizen-estimated-cost": "0.01"})
        )
        cheap = await checked(worker, invoke(alice(keys), "support-bot"))
    # Rego sees the server's figure (the agent's 1 USD ceiling), not the caller's silence.
    for verdict in (silent, lowered):
        assert verdict.status == 403
        assert verdict.reasons == ("calls estimated over 0.5 USD are not allowed",)
    assert cheap.status == 200


async def test_talking_executions_down_with_estimate_headers_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    zero = {"x-kaizen-estimated-cost": "0", "x-kaizen-estimated-tokens": "0"}
    async with sidecar_worker(bundle(keys), prefix) as worker:
        statuses = [
            (await checked(worker, invoke(f"Bearer {API_KEY}", **zero))).status for _ in range(4)
        ]
    assert statuses == [200, 200, 200, 403]  # ci-daily: executions always reserve 1
    assert counter(sync_redis, prefix, "apikey:ci-bot", "executions") == 3


async def test_invoking_an_agent_outside_the_bundle_to_escape_its_ceiling_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    async with sidecar_worker(bundle(keys), prefix) as worker:
        verdict = await checked(worker, invoke(alice(keys), "ghost-bot"))
    assert verdict.status == 403
    assert "budget org-spend (org cost_usd per day)" in verdict.reasons[0]
    assert "agent:ghost-bot is not deployed in this bundle" in verdict.reasons[0]
    assert counter(sync_redis, prefix, "org", "cost_usd") == 0  # nothing reserved


async def test_leaving_a_reservation_unsettled_to_free_it_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    async with sidecar_worker(bundle(keys), prefix) as worker:
        verdict = await checked(worker, invoke(alice(keys)))
        assert verdict.status == 200
        # The gateway never settles (it crashed, or the call never reached it): the
        # reservation stays charged for its counter's window, and its record waits for
        # a settle until it expires.
        assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == CEILING_USD
        assert sync_redis.ttl(f"{prefix}reservation:{{{ORG}}}:{verdict.decision_id}") > 0
        # Settling with the real (lower) use afterwards is what brings it down.
        settled = await worker.settle(verdict.decision_id, {"cost_usd": 0.002, "tokens": 40})
    assert settled == 3  # bot-spend, bot-tokens, org-spend
    assert counter(sync_redis, prefix, "org", "cost_usd") == pytest.approx(0.002)
    assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == pytest.approx(0.002)
    assert counter(sync_redis, prefix, "agent:support-bot", "tokens") == 40


async def test_an_approved_call_escaping_its_budget_charge_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    body = b'{"input": "deploy the release"}'

    def approved_retry(request_id: str) -> HttpFacts:
        # a grant for this sidecar's gateway and this very body, as the control plane issues it
        grant = approval_grant(
            keys, approval_request_id=request_id, gateway_token=GATEWAY_TOKEN, body=body
        )
        return invoke(alice(keys), "deployer", body, **{"x-kaizen-approval": grant})

    async with sidecar_worker(bundle(keys), prefix) as worker:
        held = await checked(worker, invoke(alice(keys), "deployer", body))
        assert (held.status, held.outcome) == (403, "require_approval")
        assert counter(sync_redis, prefix, "agent:deployer", "cost_usd") == 0  # held: looked
        approved = await checked(worker, approved_retry("apr-7"))
        assert (approved.status, approved.reasons) == (200, ("approved by approval request apr-7",))
        # The approval lifts the soft limit it was asked for, not the charge: the call
        # reserved its ceiling, and the gateway's settle finds it under the decision id.
        assert counter(sync_redis, prefix, "agent:deployer", "cost_usd") == CEILING_USD
        assert await worker.settle(approved.decision_id, {"cost_usd": 0.004}) == 2
        assert counter(sync_redis, prefix, "agent:deployer", "cost_usd") == pytest.approx(0.004)
        # Nor does an approval lift the hard limit: 0.004 + 0.01 fits 0.015, then no more.
        second = await checked(worker, approved_retry("apr-8"))
        assert second.status == 200
        over = await checked(worker, approved_retry("apr-9"))
    assert over.status == 403
    assert "budget deployer-spend (agent:deployer cost_usd per day) exceeded" in over.reasons[0]


async def test_sharing_a_budget_counter_with_another_organisation_on_one_redis_is_refused(
    keys: Keys, prefix: str, sync_redis: redis.Redis
) -> None:
    # Two tenants, one Redis and one key prefix; both have the budget `ci-daily` on a key
    # named `ci-bot` (scope apikey:ci-bot, 3 executions a day).
    async with (
        sidecar_worker(bundle(keys), prefix) as acme,
        sidecar_worker(bundle(keys, OTHER_ORG), prefix) as globex,
    ):
        ours = [(await checked(acme, invoke(f"Bearer {API_KEY}"))).status for _ in range(4)]
        theirs = [(await checked(globex, invoke(f"Bearer {API_KEY}"))).status for _ in range(4)]
        # Nor can one tenant's sidecar settle (talk down) the other's reservations.
        mine = await checked(acme, invoke(alice(keys)))
        charged = counter(sync_redis, prefix, "agent:support-bot", "cost_usd")
        assert await globex.settle(mine.decision_id, {"cost_usd": 0, "tokens": 0}) == 0
        assert counter(sync_redis, prefix, "agent:support-bot", "cost_usd") == charged
        assert await acme.settle(mine.decision_id, {"cost_usd": 0, "tokens": 0}) == 3
        after = counter(sync_redis, prefix, "agent:support-bot", "cost_usd")
        assert after == pytest.approx(charged - CEILING_USD)
    assert ours == [200, 200, 200, 403]
    assert theirs == [200, 200, 200, 403]  # not refused by the other tenant's usage
    assert counter(sync_redis, prefix, "apikey:ci-bot", "executions") == 3
    assert counter(sync_redis, prefix, "apikey:ci-bot", "executions", OTHER_ORG) == 3


# -- deploy time: a model nobody priced is never counted as free --------------------------------

UNPRICED = """\
kind: Agent
metadata: {name: mystery-bot}
spec:
  model: {provider: openai, name: mystery-model-9000}
"""
DECLARED = """\
kind: Agent
metadata: {name: local-bot}
spec:
  model: {provider: openai, name: in-house-llm}
  budget: {max_cost_usd_per_call: 0.05, price_per_1m_tokens: {input: 0.5, output: 1.5}}
"""
PIPELINE = """\
kind: Pipeline
metadata: {name: chain}
spec:
  pattern: sequential
  agents: [local-bot, mystery-bot]
"""


async def _created(client: httpx.AsyncClient, owner: Account, path: str, body: object) -> str:
    response = await client.post(path, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_deploying_an_agent_whose_model_has_no_price_is_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    gateway = await _created(
        client,
        owner,
        "/api/v1/gateways",
        {"name": "edge", "environment": "prod", "url": "http://edge.test:8080/"},
    )
    for collection, source in (
        ("agents", UNPRICED),
        ("agents", DECLARED),
        ("pipelines", PIPELINE),
    ):
        response = await client.post(
            f"/api/v1/{collection}", json={"source": source}, headers=owner.headers
        )
        assert response.status_code == 201, response.text

    async def deploy(kind: str, name: str) -> httpx.Response:
        return await client.post(
            "/api/v1/deployments",
            json={"gateway_id": gateway, "kind": kind, "name": name},
            headers=owner.headers,
        )

    refused = await deploy("agent", "mystery-bot")
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert "model 'mystery-model-9000' has no known price" in error["message"]
    assert error["details"][0]["field"] == "spec.model"
    # Nor can it ride into the bundle as a pipeline's agent.
    through = await deploy("pipeline", "chain")
    assert through.status_code == 422, through.text
    assert through.json()["error"]["details"][0] == {
        "field": "spec.model",
        "agent": "mystery-bot",
        "message": through.json()["error"]["message"],
    }
    assert "needed by pipeline chain" in through.json()["error"]["message"]
    listed = await client.get("/api/v1/deployments", headers=owner.headers)
    assert listed.json()["items"] == []  # the refusals changed nothing
    # A model the deployer priced explicitly deploys.
    assert (await deploy("agent", "local-bot")).status_code == 201
