"""A tenant's Rego cannot exhaust the control plane for everyone (M8 item 16).

Each test writes a pathological policy through the API and drives it through a route that
evaluates Rego (simulate, policy tests, publish, replay), on the real stacks (embedded
SQLite, and PostgreSQL + Redis) built by tests/conftest.py's helpers with tight sandbox
limits: a 5 s timeout, a 256 MB memory cap, one worker per organisation and small rate
limits, so an attack is refused in seconds rather than the production defaults' ten.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from control_plane.app import create_app
from tests.conftest import (
    REDIS_PREFIX,
    Account,
    PostgresDatabases,
    Stack,
    _reset,
    make_settings,
    signup,
)

LIMITS: dict[str, Any] = {
    "rego_timeout_seconds": 5.0,
    "rego_memory_mb": 256,
    "rego_workers": 2,
    "rego_workers_per_organization": 1,
    "rego_queue_per_organization": 1,
    "rego_simulations_per_window": 8,
    "rego_rate_window_seconds": 60,
}

ROLES = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
"""


def rego(name: str, body: str) -> str:
    return (
        f"kind: RegoPolicy\nmetadata: {{name: {name}}}\nspec:\n  rego: |\n"
        f"    package kaizen.abac.{name.replace('-', '_')}\n    import rego.v1\n    {body}\n"
    )


# Catastrophic backtracking: 2^40 steps in one built-in call, in constant memory. rego-cpp's
# statement limit never sees it; in-process it would hold a thread (and a core) for days.
SPIN = rego(
    "spin",
    'deny contains "spun" if regex.match("^(a+)+$", concat("", ["'
    + "a" * 40
    + '", input.action]))',
)
# A hundred million numbers materialised: gigabytes.
HOG = rego(
    "hog", 'deny contains "hogged" if count([x | some x in numbers.range(1, 100000000)]) > 0'
)
CALM = rego("calm", 'deny contains "shell is forbidden" if input.tool.name == "shell"')
A_CASE = """\
kind: PolicyTest
metadata: {name: smoke}
spec:
  cases:
    - name: alice may invoke
      input: {principal: {id: "user:alice@example.com", type: user}, action: invoke,
              resource: {type: agent, id: "agent:support-bot"}, channel: api}
      expect: {outcome: allow}
"""
INPUT = {
    "principal": {"id": "user:alice@example.com", "type": "user", "teams": []},
    "action": "invoke",
    "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "dev"},
    "channel": "api",
}
WINDOW = {"since": "2026-11-26T00:00:00Z", "until": "2026-11-27T00:00:00Z"}


@pytest.fixture(scope="module")
async def limited_stacks(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
    redis_url: str,
) -> AsyncIterator[dict[str, Stack]]:
    postgres = await postgres_databases.create("rego")
    configs = {
        "embedded": make_settings(tmp_path_factory.mktemp("rego-embedded"), **LIMITS),
        "production": make_settings(
            tmp_path_factory.mktemp("rego-production"),
            database_url=postgres,
            redis_url=redis_url,
            redis_prefix=REDIS_PREFIX,
            **LIMITS,
        ),
    }
    async with AsyncExitStack() as running:
        stacks = {}
        for name, settings in configs.items():
            app = create_app(settings)
            await running.enter_async_context(app.router.lifespan_context(app))
            stacks[name] = Stack(name, app, settings)
        yield stacks


@pytest.fixture(params=["embedded", "production"])
async def limited(request: pytest.FixtureRequest, limited_stacks: dict[str, Stack]) -> Stack:
    chosen = limited_stacks[request.param]
    await _reset(chosen)
    return chosen


@pytest.fixture
async def http(limited: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=limited.app, client=("203.0.113.9", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
        yield client


async def _apply(http: httpx.AsyncClient, who: Account, source: str) -> None:
    response = await http.post("/api/v1/policies", json={"source": source}, headers=who.headers)
    assert response.status_code == 201, response.text


async def _simulate(http: httpx.AsyncClient, who: Account) -> httpx.Response:
    return await http.post("/api/v1/policies/simulate", json={"input": INPUT}, headers=who.headers)


def _refused(response: httpx.Response, *, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def _served_meanwhile(
    http: httpx.AsyncClient, attack: asyncio.Task[httpx.Response], bystander: Account
) -> None:
    """While the attack is being evaluated, another organisation's simulate is answered."""
    answered = await _simulate(http, bystander)
    assert answered.status_code == 200, answered.text
    assert answered.json()["outcome"] == "allow"
    assert not attack.done(), "the bystander was answered only after the attack ended"


async def test_pathological_rule_in_simulate_is_refused(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + SPIN)
    await _apply(http, bystander, ROLES + "---\n" + CALM)
    sandbox = limited.app.state.rego
    replaced = sandbox.replaced

    attack = asyncio.create_task(_simulate(http, attacker))
    await asyncio.sleep(0)  # the attack reaches its worker first
    await _served_meanwhile(http, attack, bystander)
    error = _refused(await asyncio.wait_for(attack, 60))

    assert error["code"] == "evaluation_limit"
    assert "simulating policies agent-roles, spin" in error["message"]
    assert "exceeded 5 seconds" in error["message"]
    assert sandbox.replaced == replaced + 1  # the spinning worker was killed and replaced
    # The replacement serves the attacker's organisation again once the policy is fixed.
    await _apply(http, attacker, ROLES + "---\n" + rego("spin", "deny contains 1 if false"))
    assert (await _simulate(http, attacker)).status_code == 200


async def test_pathological_rule_in_policy_tests_is_refused(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + SPIN + "---\n" + A_CASE)
    await _apply(http, bystander, ROLES + "---\n" + CALM)

    attack = asyncio.create_task(
        http.post("/api/v1/policies/test", json={"draft": True}, headers=attacker.headers)
    )
    await asyncio.sleep(0)
    await _served_meanwhile(http, attack, bystander)
    error = _refused(await asyncio.wait_for(attack, 60))
    assert "testing policies agent-roles, smoke, spin" in error["message"]
    assert "exceeded 5 seconds" in error["message"]


async def test_pathological_rule_in_publish_is_refused_and_publishes_nothing(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + SPIN + "---\n" + A_CASE)
    await _apply(http, bystander, ROLES + "---\n" + CALM)

    attack = asyncio.create_task(
        http.post("/api/v1/policies/publish", json={}, headers=attacker.headers)
    )
    await asyncio.sleep(0)
    await _served_meanwhile(http, attack, bystander)
    error = _refused(await asyncio.wait_for(attack, 60))
    assert "publishing policies agent-roles, smoke, spin" in error["message"]
    assert "nothing was changed" in error["message"]

    bundles = await http.get("/api/v1/bundles", headers=attacker.headers)
    assert bundles.json()["items"] == []
    listed = await http.get("/api/v1/policies", headers=attacker.headers)
    assert {p["status"] for p in listed.json()["items"]} == {"draft"}
    events = await http.get("/api/v1/audit-events?limit=500", headers=attacker.headers)
    assert not [e for e in events.json()["items"] if e["action"].startswith("bundle.")]


async def _seed_decisions(
    http: httpx.AsyncClient, owner: Account, workspaces: tuple[str, ...] = ("dev",) * 3
) -> None:
    await _apply(http, owner, ROLES)
    published = await http.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    gateway = await http.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test"},
        headers=owner.headers,
    )
    assert gateway.status_code == 201, gateway.text
    decisions = [
        {
            "decision_id": f"d{i}",
            "time": f"2026-11-26T10:00:0{i}Z",
            "input": {**INPUT, "resource": {**INPUT["resource"], "workspace": workspace}},
            "result": {"decision_id": f"d{i}", "outcome": "allow", "reasons": []},
        }
        for i, workspace in enumerate(workspaces)
    ]
    ingested = await http.post(
        "/api/v1/decisions/ingest",
        json={"decisions": decisions},
        headers={"Authorization": f"Bearer {gateway.json()['credential']}"},
    )
    assert ingested.status_code == 200, ingested.text


async def test_pathological_rule_in_replay_is_refused(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _seed_decisions(http, attacker)
    await _apply(http, attacker, SPIN)
    await _apply(http, bystander, ROLES + "---\n" + CALM)

    attack = asyncio.create_task(
        http.post("/api/v1/policies/replay", json=WINDOW, headers=attacker.headers)
    )
    await asyncio.sleep(0)
    await _served_meanwhile(http, attack, bystander)
    error = _refused(await asyncio.wait_for(attack, 60))
    assert "replaying policies agent-roles, spin" in error["message"]
    assert "exceeded 5 seconds" in error["message"]
    replays = await http.get("/api/v1/replays", headers=attacker.headers)
    assert replays.json()["items"] == []  # no job was created


async def test_pathological_rule_deep_in_a_replay_fails_the_job_not_the_server(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    """The newest stored decision (the one replay probes) is harmless; an older one makes
    the rule spin. The job fails naming the limit; another organisation is served."""
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _seed_decisions(http, attacker, ("slow", "dev", "dev"))  # d0 is the oldest
    spin_on_slow = rego(
        "spin",
        'deny contains "spun" if { input.resource.workspace == "slow"; regex.match("^(a+)+$", '
        'concat("", ["' + "a" * 40 + '", input.action])) }',
    )
    await _apply(http, attacker, spin_on_slow)
    await _apply(http, bystander, ROLES + "---\n" + CALM)
    replaced = limited.app.state.rego.replaced

    started = await http.post("/api/v1/policies/replay", json=WINDOW, headers=attacker.headers)
    assert started.status_code == 202, started.text
    answered = await _simulate(http, bystander)
    assert answered.status_code == 200, answered.text
    job: dict[str, Any] = (
        await http.get(f"/api/v1/replays/{started.json()['id']}", headers=attacker.headers)
    ).json()
    assert job["status"] in ("queued", "running"), "the bystander was answered only after"
    while job["status"] in ("queued", "running"):
        await asyncio.sleep(0.2)
        polled = await http.get(f"/api/v1/replays/{job['id']}", headers=attacker.headers)
        job = polled.json()
    assert job["status"] == "failed", job
    assert "replaying policies agent-roles, spin" in job["error"]
    assert "exceeded 5 seconds" in job["error"]
    assert limited.app.state.rego.replaced == replaced + 1


async def test_memory_hungry_rule_is_refused_naming_the_limit(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + HOG)
    await _apply(http, bystander, ROLES + "---\n" + CALM)
    replaced = limited.app.state.rego.replaced

    error = _refused(await asyncio.wait_for(_simulate(http, attacker), 60))
    assert error["code"] == "evaluation_limit"
    assert "simulating policies agent-roles, hog" in error["message"]
    assert "exceeded the memory limit of 256 MB" in error["message"]
    assert limited.app.state.rego.replaced == replaced + 1
    assert (await _simulate(http, bystander)).status_code == 200


async def test_simulate_flood_is_rate_limited_for_that_organisation_only(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + CALM)
    await _apply(http, bystander, ROLES + "---\n" + CALM)

    for _ in range(LIMITS["rego_simulations_per_window"]):
        assert (await _simulate(http, attacker)).status_code == 200
    refused = await _simulate(http, attacker)
    error = _refused(refused, status=429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "too many policy simulations and validations for this organisation" in error["message"]
    assert "the limit is 8 per 60 s" in error["message"]

    assert (await _simulate(http, bystander)).status_code == 200


async def test_concurrent_evaluation_flood_is_refused_for_that_organisation_only(
    http: httpx.AsyncClient, limited: Stack
) -> None:
    """One organisation cannot queue up the whole pool: one of its evaluations runs, one
    waits, the rest are refused at once; another organisation is still answered."""
    attacker, bystander = await signup(http, "Mallory"), await signup(http, "Bystander")
    await _apply(http, attacker, ROLES + "---\n" + SPIN)
    await _apply(http, bystander, ROLES + "---\n" + CALM)

    flood = [asyncio.create_task(_simulate(http, attacker)) for _ in range(4)]
    await asyncio.sleep(0)
    answered = await _simulate(http, bystander)
    assert answered.status_code == 200, answered.text
    statuses = sorted(r.status_code for r in await asyncio.wait_for(asyncio.gather(*flood), 60))
    assert statuses == [422, 422, 429, 429]
