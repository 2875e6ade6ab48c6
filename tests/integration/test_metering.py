"""Metering (M12): executions, tokens and cost per day, workspace, agent and API key over a
period, from ingested execution and decision records; JSON and CSV; one tenant only."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests.conftest import Account, signup
from tests.integration.plan_support import add_gateway


def _decision(decision_id: str, time: str, workspace: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": "agent", "id": "agent:bot"}
    if workspace:
        resource["workspace"] = workspace
    return {
        "decision_id": decision_id,
        "time": time,
        "input": {
            "principal": {"id": "apikey:ci", "type": "apikey"},
            "action": "invoke",
            "resource": resource,
            "channel": "api",
        },
        "result": {"decision_id": decision_id, "outcome": "allow", "bundle_revision": "1"},
        "duration_us": 40,
        "instance": "sidecar-1",
    }


def _execution(
    n: int, time: str, principal: str, name: str, tokens: tuple[int, int], cost: float
) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "time": time,
        "principal": principal,
        "kind": "agent",
        "name": name,
        "channel": "api",
        "status": "succeeded",
        "tokens_in": tokens[0],
        "tokens_out": tokens[1],
        "cost_usd": cost,
        "latency_ms": 10.0,
        "decision_id": f"d{n}",
    }


RECORDS = [
    # n, time, principal, agent, workspace, tokens, cost
    (1, "2026-11-25T23:59:00Z", "apikey:ci", "bot", "prod", (10, 20), 0.001),
    (2, "2026-11-26T00:00:00Z", "apikey:ci", "bot", "prod", (5, 5), 0.002),
    (3, "2026-11-26T10:00:00Z", "user:alice@example.com", "bot", "dev", (1, 2), 0.004),
    (4, "2026-11-26T11:00:00Z", "apikey:ops", "helper", None, (100, 0), 0.008),
    (5, "2026-11-27T00:00:00Z", "apikey:ci", "bot", "prod", (7, 7), 0.016),  # after `to`
]
PERIOD = {"from": "2026-11-25T00:00:00Z", "to": "2026-11-27T00:00:00Z"}


async def _ingest(client: httpx.AsyncClient, owner: Account) -> None:
    created = await add_gateway(client, owner)
    headers = {"Authorization": f"Bearer {created.json()['credential']}"}
    decisions = [_decision(f"d{n}", t, ws) for n, t, _p, _a, ws, _tk, _c in RECORDS]
    executions = [_execution(n, t, p, a, tk, c) for n, t, p, a, _ws, tk, c in RECORDS]
    stored = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": decisions}, headers=headers
    )
    assert stored.status_code == 200, stored.text
    stored = await client.post(
        "/api/v1/executions/ingest", json={"executions": executions}, headers=headers
    )
    assert stored.json()["accepted"] == 5, stored.text


async def _totals(client: httpx.AsyncClient, who: Account, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/usage/totals", params=PERIOD | params, headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _key(row: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(row[n] for n in names)


async def test_totals_by_day_workspace_agent_and_api_key(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _ingest(client, owner)
    whole = await _totals(client, owner, group_by="")
    assert whole["from"] == "2026-11-25T00:00:00Z"
    assert whole["total"] == {
        "executions": 4,
        "tokens_in": 116,
        "tokens_out": 27,
        "tokens": 143,
        "cost_usd": 0.015,
    }
    days = await _totals(client, owner, group_by="day")
    assert [(r["day"], r["executions"], r["tokens"]) for r in days["items"]] == [
        ("2026-11-25", 1, 30),
        ("2026-11-26", 3, 113),
    ]
    by = await _totals(client, owner, group_by="day,workspace,agent,api_key")
    rows = {_key(r, "day", "workspace", "agent", "api_key"): r["cost_usd"] for r in by["items"]}
    assert rows == {
        ("2026-11-25", "prod", "bot", "ci"): 0.001,
        ("2026-11-26", "prod", "bot", "ci"): 0.002,
        ("2026-11-26", "dev", "bot", None): 0.004,
        ("2026-11-26", None, "helper", "ops"): 0.008,
    }
    keys = await _totals(client, owner, group_by="api_key")
    assert [(r["api_key"], r["executions"]) for r in keys["items"]] == [
        (None, 1),
        ("ci", 2),
        ("ops", 1),
    ]
    assert keys["total"]["executions"] == 4


async def test_totals_as_csv(client: httpx.AsyncClient, owner: Account) -> None:
    await _ingest(client, owner)
    for extra, headers in (({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})):
        response = await client.get(
            "/api/v1/usage/totals",
            params=PERIOD | {"group_by": "day,agent"} | extra,
            headers=owner.headers | headers,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == [
            "day",
            "kind",
            "agent",
            "executions",
            "tokens_in",
            "tokens_out",
            "tokens",
            "cost_usd",
        ]
        assert rows[1:] == [
            ["2026-11-25", "agent", "bot", "1", "10", "20", "30", "0.001"],
            ["2026-11-26", "agent", "bot", "2", "6", "7", "13", "0.006"],
            ["2026-11-26", "agent", "helper", "1", "100", "0", "100", "0.008"],
        ]


async def test_another_organisations_usage_is_not_counted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _ingest(client, owner)
    other = await signup(client, "Other")
    theirs = await _totals(client, other, group_by="day,workspace")
    assert theirs["items"] == []
    assert theirs["total"]["executions"] == 0


async def test_bad_periods_and_groups_are_refused_naming_the_field(
    client: httpx.AsyncClient, owner: Account
) -> None:
    cases = [
        ({"group_by": "day,planet"}, "group_by"),
        ({"group_by": "day,day"}, "group_by"),
        ({"from": "2026-11-27T00:00:00Z", "to": "2026-11-26T00:00:00Z"}, "to"),
        ({"from": "2026-11-26T00:00:00"}, "from"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ]
    for params, field in cases:
        response = await client.get("/api/v1/usage/totals", params=params, headers=owner.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["details"][0]["field"] == field, response.text
    garbage = await client.get(
        "/api/v1/usage/totals", params={"from": "yesterday"}, headers=owner.headers
    )
    assert garbage.status_code == 422
    assert "from" in garbage.text
