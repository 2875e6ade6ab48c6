"""Gateways and their credential, what sidecars report (status, decisions, executions),
and the claims sidecars authorize from (docs/runtime-protocols.md)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from control_plane.db.models import Gateway
from control_plane.db.session import SYSTEM
from tests.conftest import PASSWORD, Account, Stack, member, signup

POLICY = "kind: RolePolicy\nmetadata: {name: extra-roles}\nspec:\n  roles: [{name: reader}]\n"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _gateway(client: httpx.AsyncClient, who: Account, name: str = "edge") -> dict[str, Any]:
    response = await client.post(
        "/api/v1/gateways",
        json={"name": name, "environment": "prod", "url": "http://gw.test:8080"},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _decision(decision_id: str, outcome: str = "allow", second: int = 0) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "time": f"2026-11-26T10:00:{second:02d}Z",
        "input": {
            "principal": {"id": "user:alice@example.com", "type": "user"},
            "action": "invoke",
            "resource": {"type": "agent", "id": "agent:support-bot"},
            "channel": "api",
        },
        "result": {"decision_id": decision_id, "outcome": outcome, "bundle_revision": "1"},
        "duration_us": 40,
        "instance": "sidecar-1",
    }


async def test_gateway_credential_is_shown_once_and_hashed(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    created = await _gateway(client, owner)
    credential = created["credential"]
    assert credential.startswith("kgw_")
    fetched = await client.get(f"/api/v1/gateways/{created['id']}", headers=owner.headers)
    assert credential not in fetched.text
    async with stack.db.session(SYSTEM) as session:
        row = await session.scalar(select(Gateway))
    assert row is not None
    assert row.credential_hash == hashlib.sha256(credential.encode()).hexdigest()

    me = await client.get("/api/v1/gateways/self", headers=_bearer(credential))
    assert me.status_code == 200
    assert me.json()["bundle_scope"] == owner.organization_id
    assert me.json()["name"] == "edge"
    assert (await client.get("/api/v1/gateways/self", headers=owner.headers)).status_code == 401
    # A gateway credential is no user credential.
    assert (await client.get("/api/v1/me", headers=_bearer(credential))).status_code == 401


async def test_who_may_register_gateways(client: httpx.AsyncClient, owner: Account) -> None:
    operator = await member(client, owner, "operator")
    developer = await member(client, owner, "developer")
    await _gateway(client, operator, "by-operator")
    refused = await client.post(
        "/api/v1/gateways",
        json={"name": "x", "environment": "prod", "url": "http://x.test"},
        headers=developer.headers,
    )
    assert refused.status_code == 403
    bad = await client.post(
        "/api/v1/gateways",
        json={"name": "y", "environment": "moon", "url": "ftp://x"},
        headers=owner.headers,
    )
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["error"]["details"]} == {"environment", "url"}


async def test_sidecar_downloads_its_own_bundle_only(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    credential = (await _gateway(client, owner))["credential"]
    mine = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=_bearer(credential)
    )
    assert mine.status_code == 200
    # 1: the publish; 2: re-signed when the gateway registered (its MCP URL, M11)
    assert mine.headers["x-kaizen-bundle-revision"] == "2"

    other = await signup(client, "Other Corp")
    theirs = await client.get(
        f"/api/v1/bundles/{other.organization_id}/bundle.tar.gz", headers=_bearer(credential)
    )
    assert theirs.status_code == 404
    forged = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=_bearer("kgw_forged")
    )
    assert forged.status_code == 401


async def test_rotated_or_deleted_credential_stops_working(
    client: httpx.AsyncClient, owner: Account
) -> None:
    created = await _gateway(client, owner)
    rotated = await client.post(
        f"/api/v1/gateways/{created['id']}/credential", headers=owner.headers
    )
    assert rotated.status_code == 201
    old, new = created["credential"], rotated.json()["credential"]
    assert (await client.get("/api/v1/gateways/self", headers=_bearer(old))).status_code == 401
    assert (await client.get("/api/v1/gateways/self", headers=_bearer(new))).status_code == 200
    await client.delete(f"/api/v1/gateways/{created['id']}", headers=owner.headers)
    assert (await client.get("/api/v1/gateways/self", headers=_bearer(new))).status_code == 401
    actions = [
        e["action"]
        for e in (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    ]
    assert {"gateway.create", "gateway.rotate_credential", "gateway.delete"} <= set(actions)


async def test_status_reports_show_instances_and_staleness(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    created = await _gateway(client, owner)
    credential = created["credential"]
    # Revision 2: the publish, re-signed when the gateway registered (its MCP URL).
    for instance, revision in (("sidecar-a", 2), ("sidecar-b", 1)):
        reported = await client.post(
            "/api/v1/gateways/self/status",
            json={
                "instance": instance,
                "bundle_revision": revision,
                "key_id": "k1",
                "last_sync": "2026-11-26T10:00:00Z",
                "decisions": {"allow": 5, "deny": 1},
                "log_backlog": 3,
                "started_at": "2026-11-26T09:00:00Z",
            },
            headers=_bearer(credential),
        )
        assert reported.status_code == 204, reported.text
    detail = (await client.get(f"/api/v1/gateways/{created['id']}", headers=owner.headers)).json()
    assert detail["current_revision"] == 2
    by_name = {i["instance"]: i for i in detail["instances"]}
    assert by_name["sidecar-a"]["stale"] is False
    assert by_name["sidecar-a"]["decisions"] == {"allow": 5, "deny": 1}
    assert by_name["sidecar-b"]["stale"] is True  # serves an older revision


def _budget(window: str, used: float) -> dict[str, object]:
    return {
        "name": "org-daily",
        "scope": "org",
        "metric": "executions",
        "period": "day",
        "window": window,
        "used": used,
        "limit": 100,
        "soft_limit": 80,
    }


async def test_status_reports_carry_budget_usage_per_window(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]

    async def report(*budgets: dict[str, object]) -> None:
        response = await client.post(
            "/api/v1/gateways/self/status",
            json={"instance": "sidecar-a", "budgets": list(budgets)},
            headers=_bearer(credential),
        )
        assert response.status_code == 204, response.text

    await report(_budget("day:2026-11-25", 97), _budget("day:2026-11-26", 4))
    await report(_budget("day:2026-11-26", 9))  # the same window again: the newest wins
    listed = await client.get("/api/v1/usage", headers=owner.headers)
    assert listed.status_code == 200, listed.text
    by_window = {u["window"]: u for u in listed.json()["items"]}
    assert {w: u["used"] for w, u in by_window.items()} == {
        "day:2026-11-25": 97,
        "day:2026-11-26": 9,
    }
    assert (by_window["day:2026-11-26"]["limit"], by_window["day:2026-11-26"]["soft_limit"]) == (
        100,
        80,
    )
    today = await client.get(
        "/api/v1/usage", params={"window": "day:2026-11-26"}, headers=owner.headers
    )
    assert [u["used"] for u in today.json()["items"]] == [9]

    bad = await client.post(
        "/api/v1/gateways/self/status",
        json={"instance": "sidecar-a", "budgets": [{**_budget("day:2026-11-26", 1), "limit": -1}]},
        headers=_bearer(credential),
    )
    assert bad.status_code == 422
    viewer = await member(client, owner, "viewer")
    assert (await client.get("/api/v1/usage", headers=viewer.headers)).status_code == 403


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("budgets.0.period", "p" * 17),
        ("budgets.0.metric", "m" * 33),
        ("budgets.0.window", "w" * 33),
        ("budgets.0.name", "n" * 129),
        ("key_id", "k" * 65),
    ],
)
async def test_status_report_fields_longer_than_stored_are_422_not_500(
    client: httpx.AsyncClient, owner: Account, field: str, value: str
) -> None:
    """Found by the fuzzer: a period longer than its column was a 500 on PostgreSQL."""
    credential = (await _gateway(client, owner))["credential"]
    budget = _budget("day:2026-11-26", 1)
    body: dict[str, object] = {"instance": "sidecar-a", "budgets": [budget]}
    if field == "key_id":
        body["key_id"] = value
    else:
        budget[field.rsplit(".", 1)[1]] = value
    response = await client.post(
        "/api/v1/gateways/self/status", json=body, headers=_bearer(credential)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    listed = await client.get("/api/v1/usage", headers=owner.headers)
    assert listed.json()["items"] == []


async def test_decision_ingest_is_idempotent_and_tenant_bound(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    batch = {"decisions": [_decision("d1"), _decision("d2", "deny", 1), _decision("d1")]}
    first = await client.post("/api/v1/decisions/ingest", json=batch, headers=_bearer(credential))
    assert first.json() == {"accepted": 2, "duplicates": 1}
    again = await client.post("/api/v1/decisions/ingest", json=batch, headers=_bearer(credential))
    assert again.json() == {"accepted": 0, "duplicates": 3}

    listed = await client.get("/api/v1/decisions", headers=owner.headers)
    # Newest first (M5: time desc, then decision id).
    assert [d["decision_id"] for d in listed.json()["items"]] == ["d2", "d1"]
    denied = await client.get("/api/v1/decisions?outcome=deny", headers=owner.headers)
    assert [d["principal"] for d in denied.json()["items"]] == ["user:alice@example.com"]
    one = await client.get("/api/v1/decisions/d2", headers=owner.headers)
    assert one.json()["result"]["outcome"] == "deny"

    other = await signup(client, "Other Corp")
    assert (await client.get("/api/v1/decisions", headers=other.headers)).json()["items"] == []
    assert (await client.get("/api/v1/decisions/d2", headers=other.headers)).status_code == 404
    # Users cannot ingest; only gateway credentials can.
    as_user = await client.post("/api/v1/decisions/ingest", json=batch, headers=owner.headers)
    assert as_user.status_code == 401


async def test_large_batches_and_malformed_records(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    big = [_decision(f"big-{i}") | {"input": {"pad": "x" * 1500}} for i in range(1000)]
    accepted = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": big}, headers=_bearer(credential)
    )
    assert accepted.status_code == 200, accepted.text[:300]
    assert accepted.json()["accepted"] == 1000
    too_many = await client.post(
        "/api/v1/decisions/ingest",
        json={"decisions": [_decision(f"x{i}") for i in range(1001)]},
        headers=_bearer(credential),
    )
    assert too_many.status_code == 422
    malformed = await client.post(
        "/api/v1/decisions/ingest",
        json={"decisions": [{"decision_id": "bad id with spaces", "time": "yesterday"}]},
        headers=_bearer(credential),
    )
    assert malformed.status_code == 422


async def test_execution_ingest_and_listing(client: httpx.AsyncClient, owner: Account) -> None:
    credential = (await _gateway(client, owner))["credential"]
    record = {
        "id": "e1",
        "time": "2026-11-26T10:00:01Z",
        "principal": "user:alice@example.com",
        "kind": "agent",
        "name": "support-bot",
        "channel": "mcp",
        "status": "succeeded",
        "tokens_in": 12,
        "tokens_out": 30,
        "cost_usd": 0.0012,
        "latency_ms": 35.5,
        "decision_id": "d1",
    }
    response = await client.post(
        "/api/v1/executions/ingest",
        json={"executions": [record, record]},
        headers=_bearer(credential),
    )
    assert response.json() == {"accepted": 1, "duplicates": 1}
    listed = await client.get("/api/v1/executions?name=support-bot", headers=owner.headers)
    item = listed.json()["items"][0]
    assert (item["id"], item["tokens_out"], item["channel"]) == ("e1", 30, "mcp")


async def test_access_tokens_carry_what_sidecars_authorize_from(
    client: httpx.AsyncClient, owner: Account
) -> None:
    security = await member(client, owner, "security_admin")
    team = await client.post("/api/v1/teams", json={"name": "research"}, headers=owner.headers)
    await client.post(
        f"/api/v1/teams/{team.json()['id']}/members",
        json={"user_id": security.user_id},
        headers=owner.headers,
    )
    login = await client.post(
        "/api/v1/auth/login", json={"email": security.email, "password": PASSWORD}
    )
    token = login.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["email"] == security.email
    assert claims["role"] == "security_admin"
    assert claims["teams"] == ["research"]
    assert claims["org"] == owner.organization_id
