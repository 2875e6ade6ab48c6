"""Impact replay of stored decisions against policy drafts, and the publish gate."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from control_plane.db.models import ReplayJob
from control_plane.services import replay, replay_runner
from control_plane.services.audit import Actor
from control_plane.services.replay_runner import ReplayRunner
from tests.conftest import Account, Stack, member, signup

ROLES = """kind: RolePolicy
metadata: {{name: agent-roles}}
spec:
  roles:
    - name: agent-user
      permissions: [{{resource: "agent:*", actions: [invoke]}}]
  bindings:
{bindings}"""
ALICE, BOB, CAROL = "user:alice@example.com", "user:bob@example.com", "user:carol@example.com"
PUBLISHED = ROLES.format(
    bindings=f'    - {{subject: "{ALICE}", role: agent-user}}\n'
    f'    - {{subject: "{BOB}", role: agent-user}}\n'
)
# The draft: Carol gains the role (deny→allow), the shell agent is retired (allow→deny) and
# prod needs approval (allow→require_approval).
DRAFT_ROLES = PUBLISHED + f'    - {{subject: "{CAROL}", role: agent-user}}\n'
GUARDRAILS = """kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "the shell agent is retired" if input.resource.id == "agent:shell-bot"
    require_approval contains "prod needs approval" if input.resource.workspace == "prod"
"""
WINDOW = {"since": "2026-11-26T00:00:00Z", "until": "2026-11-27T00:00:00Z"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _decision(
    decision_id: str,
    principal: str,
    resource: str,
    outcome: str,
    time: str,
    workspace: str | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "time": time,
        "input": {
            "principal": {"id": principal, "type": "user"},
            "action": "invoke",
            "resource": {"type": "agent", "id": resource, "workspace": workspace},
            "channel": "api",
        },
        "result": {"decision_id": decision_id, "outcome": outcome, "reasons": []},
    }


TRAFFIC = [
    _decision("a1", ALICE, "agent:support-bot", "allow", "2026-11-26T10:00:01Z"),
    _decision("a2", ALICE, "agent:support-bot", "allow", "2026-11-26T10:00:02Z"),
    _decision("a3", ALICE, "agent:support-bot", "allow", "2026-11-26T10:00:03Z"),
    _decision("b1", BOB, "agent:shell-bot", "allow", "2026-11-26T10:00:04Z"),
    _decision("b2", BOB, "agent:shell-bot", "allow", "2026-11-26T10:00:05Z"),
    _decision("c1", CAROL, "agent:support-bot", "deny", "2026-11-26T10:00:06Z"),
    _decision("p1", ALICE, "agent:support-bot", "allow", "2026-11-26T10:00:07Z", "prod"),
    # Outside the window: would flip allow→deny if it were replayed.
    _decision("old", BOB, "agent:shell-bot", "allow", "2026-11-25T23:59:59Z"),
]


async def _apply(client: httpx.AsyncClient, who: Account, source: str) -> list[dict[str, Any]]:
    response = await client.post("/api/v1/policies", json={"source": source}, headers=who.headers)
    assert response.status_code == 201, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _seed(client: httpx.AsyncClient, owner: Account) -> str:
    """Publish the baseline, record traffic through a gateway, then write the drafts;
    the gateway's credential."""
    await _apply(client, owner, PUBLISHED)
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    gateway = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test"},
        headers=owner.headers,
    )
    ingested = await client.post(
        "/api/v1/decisions/ingest",
        json={"decisions": TRAFFIC},
        headers=_bearer(gateway.json()["credential"]),
    )
    assert ingested.json() == {"accepted": len(TRAFFIC), "duplicates": 0}
    await _apply(client, owner, DRAFT_ROLES + "---\n" + GUARDRAILS)
    credential: str = gateway.json()["credential"]
    return credential


async def _start(
    client: httpx.AsyncClient, who: Account, path: str = "/api/v1/policies/replay", **body: Any
) -> dict[str, Any]:
    response = await client.post(path, json={**WINDOW, **body}, headers=who.headers)
    assert response.status_code == 202, response.text
    started: dict[str, Any] = response.json()
    assert started["status"] == "queued"
    assert response.headers["location"] == f"/api/v1/replays/{started['id']}"
    return started


async def _finished(client: httpx.AsyncClient, who: Account, replay_id: str) -> dict[str, Any]:
    for _ in range(600):
        response = await client.get(f"/api/v1/replays/{replay_id}", headers=who.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"replay {replay_id} did not finish: {body}")


async def _replayed(client: httpx.AsyncClient, who: Account, **body: Any) -> dict[str, Any]:
    done = await _finished(client, who, (await _start(client, who, **body))["id"])
    assert done["status"] == "completed", done
    return done


async def _audit_actions(client: httpx.AsyncClient, who: Account) -> list[str]:
    events = await client.get("/api/v1/audit-events?limit=500", headers=who.headers)
    return [e["action"] for e in events.json()["items"]]


async def test_replay_counts_transitions_with_examples_and_rules(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _seed(client, owner)
    viewer = await member(client, owner, "viewer")  # policies:simulate is enough
    done = await _replayed(client, viewer)

    assert done["total"] == done["processed"] == 7
    assert done["progress"] == 1.0
    assert done["policies"] == {"agent-roles": 2, "guardrails": 1}
    result = done["result"]
    assert result["counts"] == {
        "allow->allow": 3,
        "allow->deny": 2,
        "allow->require_approval": 1,
        "deny->allow": 1,
    }
    assert (result["total"], result["changed"], result["unchanged"], result["risky"]) == (
        7,
        4,
        3,
        4,
    )
    transitions = {(t["from"], t["to"]): t for t in result["transitions"]}
    assert set(transitions) == {("allow", "deny"), ("allow", "require_approval"), ("deny", "allow")}

    retired = transitions[("allow", "deny")]
    assert retired["count"] == 2
    assert retired["risky"] is True
    assert {e["decision_id"] for e in retired["examples"]} == {"b1", "b2"}
    example = retired["examples"][0]
    assert example["input"]["principal"] == BOB
    assert example["input"]["resource"] == "agent:shell-bot"
    assert example["old"]["outcome"] == "allow"
    assert example["new"]["outcome"] == "deny"
    assert "abac:kaizen.abac.guardrails.deny" in example["new"]["rules"]
    assert "the shell agent is retired" in example["new"]["reasons"]

    held = transitions[("allow", "require_approval")]["examples"]
    assert [e["decision_id"] for e in held] == ["p1"]
    assert "abac:kaizen.abac.guardrails.require_approval" in held[0]["new"]["rules"]
    granted = transitions[("deny", "allow")]["examples"]
    assert [e["decision_id"] for e in granted] == ["c1"]
    assert granted[0]["new"]["rules"] == ["rbac:agent-user:invoke:agent:*"]

    assert "replay.create" in await _audit_actions(client, owner)
    listed = await client.get("/api/v1/replays", headers=viewer.headers)
    assert [(r["id"], r["status"], r["result"]) for r in listed.json()["items"]] == [
        (done["id"], "completed", None)
    ]


async def test_window_limit_examples_and_one_policy(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _seed(client, owner)
    # The two most recent decisions of the window only: p1 and c1.
    newest = await _replayed(client, owner, limit=2, examples=0)
    assert newest["total"] == newest["processed"] == 2
    assert newest["result"]["counts"] == {"allow->require_approval": 1, "deny->allow": 1}
    assert all(t["examples"] == [] for t in newest["result"]["transitions"])

    # A window holding only the decision before midnight.
    early = await _replayed(client, owner, since="2026-11-25T00:00:00Z", until=WINDOW["since"])
    assert early["result"]["counts"] == {"allow->deny": 1}

    # One policy's draft over what is published: Carol is not bound yet, so stays denied.
    policies = (await client.get("/api/v1/policies", headers=owner.headers)).json()["items"]
    guardrails = next(p for p in policies if p["name"] == "guardrails")
    one = await _finished(
        client,
        owner,
        (await _start(client, owner, f"/api/v1/policies/{guardrails['id']}/replay"))["id"],
    )
    assert one["policy_id"] == guardrails["id"]
    assert one["policies"] == {"agent-roles": 1, "guardrails": 1}
    assert one["result"]["counts"] == {
        "allow->allow": 3,
        "allow->deny": 2,
        "allow->require_approval": 1,
        "deny->deny": 1,
    }

    bad: dict[str, tuple[dict[str, Any], str]] = {
        "empty window": (
            {"since": "2027-01-01T00:00:00Z", "until": "2027-01-02T00:00:00Z"},
            "since",
        ),
        "backwards": ({"since": WINDOW["until"], "until": WINDOW["since"]}, "until"),
        "naive time": ({"since": "2026-11-26T00:00:00"}, "since"),
        "limit": ({"limit": 0}, "limit"),
        "unknown field": ({"outcome": "deny"}, "outcome"),
    }
    for case, (body, field) in bad.items():
        response = await client.post(
            "/api/v1/policies/replay", json={**WINDOW, **body}, headers=owner.headers
        )
        assert response.status_code == 422, (case, response.text)
        assert field in {d["field"] for d in response.json()["error"]["details"]}, case
    missing = await client.post(
        f"/api/v1/policies/{uuid.uuid4()}/replay", json=WINDOW, headers=owner.headers
    )
    assert missing.status_code == 404
    unauthenticated = await client.post("/api/v1/policies/replay", json=WINDOW)
    assert unauthenticated.status_code == 401


async def test_batches_cover_the_window_once_even_across_equal_times(
    client: httpx.AsyncClient, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = await _seed(client, owner)
    # Two more decisions at the very time of b1: keyset pages must neither skip nor repeat.
    same_time = [
        _decision(f"t{i}", ALICE, "agent:support-bot", "allow", "2026-11-26T10:00:04Z")
        for i in (1, 2)
    ]
    ingested = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": same_time}, headers=_bearer(credential)
    )
    assert ingested.json()["accepted"] == 2
    monkeypatch.setattr(replay_runner, "BATCH", 2)
    done = await _replayed(client, owner)
    assert done["processed"] == 9
    assert done["result"]["counts"] == {
        "allow->allow": 5,
        "allow->deny": 2,
        "allow->require_approval": 1,
        "deny->allow": 1,
    }
    # The 5 most recent: p1, c1, b2, then two of the three at 10:00:04.
    newest = await _replayed(client, owner, limit=5)
    assert newest["processed"] == 5
    assert sum(newest["result"]["counts"].values()) == 5
    assert newest["result"]["counts"]["allow->require_approval"] == 1
    assert newest["result"]["counts"]["deny->allow"] == 1


async def test_interrupted_jobs_end_failed_not_running(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await _seed(client, owner)
    organization_id = uuid.UUID(owner.organization_id)
    long_ago = datetime.now(UTC) - timedelta(minutes=10)

    def orphan() -> ReplayJob:
        """A job as a process that died mid-replay left it."""
        return ReplayJob(
            organization_id=organization_id,
            status="running",
            draft=True,
            policies={},
            policies_hash=replay.versions_hash({}),
            since=long_ago,
            until=long_ago + timedelta(minutes=1),
            max_decisions=10,
            examples_per_transition=1,
            total=10,
            processed=3,
            started_at=long_ago,
            heartbeat_at=long_ago,
        )

    async with stack.db.session(organization_id) as session:
        left_behind = orphan()
        session.add(left_behind)
    # The next process start fails what the previous one left behind.
    assert await ReplayRunner(stack.db, stack.app.state.rego).start() >= 1
    started = await _finished(client, owner, str(left_behind.id))
    assert started["status"] == "failed"
    assert "restarted" in started["error"]
    assert started["processed"] == 3

    # A reader notices a silent job (its process gone, nobody restarted) and fails it.
    async with stack.db.session(organization_id) as session:
        silent = orphan()
        session.add(silent)
    read = await _finished(client, owner, str(silent.id))
    assert read["status"] == "failed"
    assert "stopped" in read["error"]

    # A process shutting down records its own running jobs as failed.
    runner = ReplayRunner(stack.db, stack.app.state.rego)
    actor = Actor("user", owner.user_id, owner.email)
    async with stack.db.session(organization_id) as session:
        plan = await replay.plan(
            session,
            organization_id,
            stack.app.state.keys,
            policy_id=None,
            since=datetime.fromisoformat(WINDOW["since"]),
            until=datetime.fromisoformat(WINDOW["until"]),
            draft=True,
            limit=100,
            examples=1,
        )
    await replay.probe(stack.app.state.rego, organization_id, plan)
    async with stack.db.session(organization_id) as session:
        job = await replay.create(session, organization_id, actor, plan)
    runner.submit(job, plan)
    await runner.close()
    stopped = await _finished(client, owner, str(job.id))
    assert stopped["status"] == "failed"
    assert "shut down" in stopped["error"]


async def test_publish_gate_requires_a_clean_or_accepted_replay(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = await _seed(client, owner)
    settings = await client.get("/api/v1/policies/settings", headers=owner.headers)
    assert settings.json() == {"require_replay_before_publish": False}
    developer = await member(client, owner, "developer")
    refused = await client.patch(
        "/api/v1/policies/settings",
        json={"require_replay_before_publish": True},
        headers=developer.headers,
    )
    assert refused.status_code == 403
    security_admin = await member(client, owner, "security_admin")
    turned_on = await client.patch(
        "/api/v1/policies/settings",
        json={"require_replay_before_publish": True},
        headers=security_admin.headers,
    )
    assert turned_on.json() == {"require_replay_before_publish": True}
    bad = await client.patch(
        "/api/v1/policies/settings",
        json={"require_replay_before_publish": "sometimes"},
        headers=owner.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "require_replay_before_publish"

    async def publish(**body: Any) -> httpx.Response:
        return await client.post("/api/v1/policies/publish", json=body, headers=owner.headers)

    # No replay of these drafts yet.
    unreplayed = await publish()
    assert unreplayed.status_code == 409, unreplayed.text
    assert "replay" in unreplayed.json()["error"]["message"]
    # A replay with risky changes does not clear the gate on its own...
    risky = await _replayed(client, owner)
    assert risky["result"]["risky"] == 4
    assert (await publish()).status_code == 409
    # ...but naming it acknowledges them.
    unknown = await publish(accept_replay=str(uuid.uuid4()))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"] == [{"field": "accept_replay"}]
    accepted = await publish(accept_replay=risky["id"], message="shell agent retired")
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["policies"] == {"agent-roles": 2, "guardrails": 1}
    assert "replay.accept" in await _audit_actions(client, owner)

    # Traffic under the new revision, then a change of the drafts that decides alike.
    later = [
        _decision("n1", ALICE, "agent:support-bot", "allow", "2026-11-27T10:00:01Z"),
        _decision("n2", BOB, "agent:shell-bot", "deny", "2026-11-27T10:00:02Z"),
        _decision("n3", CAROL, "agent:support-bot", "allow", "2026-11-27T10:00:03Z"),
    ]
    ingested = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": later}, headers=_bearer(credential)
    )
    assert ingested.json()["accepted"] == 3
    await _apply(
        client, owner, DRAFT_ROLES.replace("  bindings:", "    - {name: reader}\n  bindings:")
    )
    stale = await publish(accept_replay=risky["id"])
    assert stale.status_code == 409  # it replayed other versions
    assert (await publish()).status_code == 409
    clean = await _replayed(
        client, owner, since="2026-11-27T00:00:00Z", until="2026-11-28T00:00:00Z"
    )
    assert clean["result"]["counts"] == {"allow->allow": 2, "deny->deny": 1}
    assert clean["result"]["risky"] == 0
    cleared = await publish()
    assert cleared.status_code == 201, cleared.text
    assert cleared.json()["policies"] == {"agent-roles": 3, "guardrails": 1}


async def test_replays_are_per_organisation(client: httpx.AsyncClient, owner: Account) -> None:
    await _seed(client, owner)
    done = await _replayed(client, owner)
    policies = (await client.get("/api/v1/policies", headers=owner.headers)).json()["items"]

    other = await signup(client, "Other Corp")
    assert (
        await client.get(f"/api/v1/replays/{done['id']}", headers=other.headers)
    ).status_code == 404
    assert (await client.get("/api/v1/replays", headers=other.headers)).json()["items"] == []
    theirs = await client.post(
        f"/api/v1/policies/{policies[0]['id']}/replay", json=WINDOW, headers=other.headers
    )
    assert theirs.status_code == 404
    # Their stored decisions are not ours to replay: our window is empty.
    empty = await client.post("/api/v1/policies/replay", json=WINDOW, headers=other.headers)
    assert empty.status_code == 422
    # Nor can their replay clear our gate.
    await client.patch(
        "/api/v1/policies/settings",
        json={"require_replay_before_publish": True},
        headers=other.headers,
    )
    foreign = await client.post(
        "/api/v1/policies/publish", json={"accept_replay": done["id"]}, headers=other.headers
    )
    assert foreign.status_code == 422
