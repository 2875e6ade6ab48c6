"""The decision-log store (M5): search by every filter, keyset pages under concurrent ingest,
export, aggregates, the per-organisation hash chain, retention, OPA uploads, tenancy."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from control_plane.db.base import utcnow
from control_plane.db.migrate import alembic_config, upgrade
from control_plane.db.partitions import month_of, partition_name
from control_plane.db.session import SYSTEM, Database
from control_plane.services import ingest_hooks
from tests.conftest import Account, PostgresDatabases, Stack, member, signup

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)


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


def _decision(
    decision_id: str,
    time: datetime,
    *,
    principal: str = "user:alice@example.com",
    action: str = "invoke",
    resource: str = "agent:support-bot",
    workspace: str = "prod",
    channel: str = "api",
    outcome: str = "allow",
    reasons: Sequence[str] = (),
    revision: str = "1",
) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "time": time.isoformat(),
        "input": {
            "principal": {"id": principal, "type": principal.split(":")[0]},
            "action": action,
            "resource": {"type": resource.split(":")[0], "id": resource, "workspace": workspace},
            "channel": channel,
            "context": {"secret": "***"},
        },
        "result": {
            "decision_id": decision_id,
            "outcome": outcome,
            "reasons": list(reasons),
            "bundle_revision": revision,
        },
        "duration_us": 40,
        "instance": "sidecar-1",
    }


async def _ingest(
    client: httpx.AsyncClient, credential: str, decisions: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    response = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": list(decisions)}, headers=_bearer(credential)
    )
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


async def _ids(client: httpx.AsyncClient, who: Account, **params: Any) -> list[str]:
    response = await client.get("/api/v1/decisions", params=params, headers=who.headers)
    assert response.status_code == 200, (params, response.text)
    return [d["decision_id"] for d in response.json()["items"]]


async def _verify(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/decisions/verify", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _sql(stack: Stack, statement: str, **params: Any) -> None:
    async with stack.db.session(SYSTEM) as session:
        await session.execute(text(statement), params)


async def test_every_filter_matches_and_misses(client: httpx.AsyncClient, owner: Account) -> None:
    gateway_a = await _gateway(client, owner, "edge-a")
    gateway_b = await _gateway(client, owner, "edge-b")
    t1, t2, t3 = T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    await _ingest(client, gateway_a["credential"], [_decision("d1", t1)])
    await _ingest(
        client,
        gateway_a["credential"],
        [
            _decision(
                "d2",
                t2,
                principal="user:bob@example.com",
                resource="agent:billing-bot",
                workspace="dev",
                channel="mcp",
                outcome="deny",
                reasons=["mcp tool shell is forbidden"],
                revision="2",
            )
        ],
    )
    await _ingest(
        client,
        gateway_b["credential"],
        [
            _decision(
                "d3",
                t3,
                principal="apikey:ci-bot",
                action="deploy",
                resource="pipeline:etl_100%",
                channel="cli",
                outcome="require_approval",
                reasons=["deploys to prod need approval"],
                revision="2",
            )
        ],
    )
    assert await _ids(client, owner) == ["d3", "d2", "d1"]
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"since": t2.isoformat()}, ["d3", "d2"]),
        ({"since": (t3 + timedelta(seconds=1)).isoformat()}, []),
        ({"until": t2.isoformat()}, ["d1"]),  # until is exclusive
        ({"until": t1.isoformat()}, []),
        ({"since": t1.isoformat(), "until": t3.isoformat()}, ["d2", "d1"]),
        ({"principal": "user:bob@example.com"}, ["d2"]),
        ({"principal": "user:nobody@example.com"}, []),
        ({"action": "deploy"}, ["d3"]),
        ({"action": "delete"}, []),
        ({"resource": "agent:*"}, ["d2", "d1"]),
        ({"resource": "*-bot"}, ["d2", "d1"]),
        ({"resource": "agent:support-bot"}, ["d1"]),
        ({"resource": "agent:support"}, []),  # no `*`: exact
        ({"resource": "pipeline:etl_100%"}, ["d3"]),
        ({"resource": "pipeline:etl_1*"}, ["d3"]),
        ({"resource": "pipeline:etl%"}, []),  # `%` and `_` are literal, not SQL wildcards
        ({"resource": "pipeline:etl__00*"}, []),
        ({"outcome": "deny"}, ["d2"]),
        ({"outcome": "unknown"}, []),
        ({"reason": "SHELL"}, ["d2"]),
        ({"reason": "approval"}, ["d3"]),
        ({"reason": "budget"}, []),
        ({"reason": "%"}, []),
        ({"channel": "cli"}, ["d3"]),
        ({"channel": "mcp", "outcome": "allow"}, []),
        ({"gateway": gateway_a["id"]}, ["d2", "d1"]),
        ({"gateway": str(uuid.uuid4())}, []),
        ({"workspace": "dev"}, ["d2"]),
        ({"workspace": "staging"}, []),
        ({"bundle_revision": "2"}, ["d3", "d2"]),
        ({"bundle_revision": "9"}, []),
        ({"decision_id": "d3"}, ["d3"]),
        ({"decision_id": "d9"}, []),
    ]
    for params, expected in cases:
        assert await _ids(client, owner, **params) == expected, params


async def test_detail_shows_input_output_and_the_deciding_policy_versions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    source = "kind: RolePolicy\nmetadata: {name: agent-roles}\nspec:\n  roles: [{name: reader}]\n"
    assert (
        await client.post("/api/v1/policies", json={"source": source}, headers=owner.headers)
    ).status_code == 201
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    revision = str(published.json()["revision"])
    credential = (await _gateway(client, owner))["credential"]
    await _ingest(
        client,
        credential,
        [
            _decision("with-bundle", T0, revision=revision),
            _decision("no-bundle", T0, revision="99"),
        ],
    )

    detail = (await client.get("/api/v1/decisions/with-bundle", headers=owner.headers)).json()
    assert detail["input"]["context"] == {"secret": "***"}  # as masked at source
    assert detail["result"]["outcome"] == "allow"
    assert detail["bundle"]["revision"] == int(revision)
    assert detail["bundle"]["policies"]["agent-roles"] == 1
    assert detail["sequence"] == 1
    assert len(detail["chain_hash"]) == 64
    unknown = (await client.get("/api/v1/decisions/no-bundle", headers=owner.headers)).json()
    assert unknown["bundle"] is None
    missing = await client.get("/api/v1/decisions/never-made", headers=owner.headers)
    assert missing.status_code == 404


async def test_pages_never_repeat_or_skip_under_concurrent_ingest(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    # Some share a time to the microsecond: the decision id breaks the tie.
    stored = [_decision(f"p{i:03d}", T0 + timedelta(seconds=i // 3)) for i in range(60)]
    await _ingest(client, credential, stored)

    async def walk() -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/api/v1/decisions", params=params, headers=owner.headers)
            ).json()
            seen += [d["decision_id"] for d in page["items"]]
            cursor = page["next_cursor"]
            await asyncio.sleep(0)
            if not cursor:
                return seen

    async def keep_ingesting() -> None:
        for round_ in range(8):
            await _ingest(
                client,
                credential,
                [
                    _decision(f"new-{round_}", T0 + timedelta(hours=1, seconds=round_)),
                    _decision(f"late-{round_}", T0 + timedelta(seconds=round_ * 2, microseconds=1)),
                ],
            )

    seen, _ = await asyncio.gather(walk(), keep_ingesting())
    assert len(seen) == len(set(seen)), "a decision appeared on two pages"
    assert {d["decision_id"] for d in stored} <= set(seen), "a stored decision was skipped"
    everything = await walk()
    assert len(everything) == 60 + 16 == len(set(everything))


async def test_export_streams_ndjson_and_csv_that_parse_back(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    decisions = [
        _decision(f"e{i:04d}", T0 + timedelta(seconds=i), outcome="deny" if i % 3 else "allow")
        for i in range(1200)  # more than one export batch
    ]
    for start in range(0, len(decisions), 600):
        await _ingest(client, credential, decisions[start : start + 600])
    auditor = await member(client, owner, "auditor")

    ndjson = await client.get(
        "/api/v1/decisions/export", params={"format": "ndjson"}, headers=auditor.headers
    )
    assert ndjson.status_code == 200, ndjson.text
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [r["decision_id"] for r in records] == [d["decision_id"] for d in reversed(decisions)]
    assert records[-1]["input"] == decisions[0]["input"]

    exported = await client.get(
        "/api/v1/decisions/export",
        params={
            "format": "csv",
            "outcome": "allow",
            "since": (T0 + timedelta(seconds=3)).isoformat(),
        },
        headers=auditor.headers,
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    expected = [d for d in reversed(decisions) if d["result"]["outcome"] == "allow"][:-1]
    assert [r["decision_id"] for r in rows] == [d["decision_id"] for d in expected]
    assert json.loads(rows[0]["input"]) == expected[0]["input"]
    assert rows[0]["outcome"] == "allow"
    # Exporting is audited; a developer may not export.
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    assert [e["action"] for e in events].count("decisions.export") == 2
    developer = await member(client, owner, "developer")
    refused = await client.get("/api/v1/decisions/export", headers=developer.headers)
    assert refused.status_code == 403


async def test_aggregates_count_by_outcome_principal_and_resource(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    decisions = [
        _decision("a1", T0 + timedelta(minutes=5), outcome="allow"),
        _decision("a2", T0 + timedelta(minutes=10), outcome="deny"),
        _decision("a3", T0 + timedelta(minutes=50), outcome="deny", principal="user:bob@x.io"),
        _decision("a4", T0 + timedelta(hours=1, minutes=1), outcome="allow"),
        _decision("a5", T0 + timedelta(hours=5), outcome="allow", resource="agent:other"),
        _decision("a6", T0 + timedelta(days=2), outcome="allow"),  # outside the window
    ]
    await _ingest(client, credential, decisions)
    window = {"since": T0.isoformat(), "until": (T0 + timedelta(hours=6)).isoformat()}

    by_outcome = await client.get(
        "/api/v1/decisions/aggregates",
        params={"by": "outcome", "interval": "hour", **window},
        headers=owner.headers,
    )
    assert by_outcome.status_code == 200, by_outcome.text
    body = by_outcome.json()
    assert len(body["buckets"]) == 6
    assert body["keys"] == ["allow", "deny"]
    first, second = body["buckets"][0], body["buckets"][1]
    assert datetime.fromisoformat(first["start"]) == T0
    assert first["counts"] == {"allow": 1, "deny": 2}
    assert first["total"] == 3
    assert second["counts"] == {"allow": 1}
    assert second["total"] == 1
    assert body["buckets"][5]["counts"] == {"allow": 1}
    assert sum(b["total"] for b in body["buckets"]) == 5

    by_principal = (
        await client.get(
            "/api/v1/decisions/aggregates",
            params={"by": "principal", "interval": "day", "top": 1, **window},
            headers=owner.headers,
        )
    ).json()
    assert by_principal["keys"] == ["user:alice@example.com"]
    assert by_principal["buckets"][0]["counts"] == {"user:alice@example.com": 4}
    assert by_principal["buckets"][0]["total"] == 5

    by_resource = (
        await client.get(
            "/api/v1/decisions/aggregates",
            params={"by": "resource", "interval": "day", "outcome": "allow", **window},
            headers=owner.headers,
        )
    ).json()
    assert by_resource["buckets"][0]["counts"] == {"agent:support-bot": 2, "agent:other": 1}


async def test_chain_verifies_and_names_the_first_altered_decision(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    await _ingest(
        client, credential, [_decision(f"c{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    )
    await _ingest(client, credential, [_decision("c5", T0 - timedelta(days=3))])  # a late one
    auditor = await member(client, owner, "auditor")
    report = await _verify(client, auditor)
    assert report["ok"] is True
    assert report["checked"] == 6
    assert report["first_broken"] is None
    assert report["head_sequence"] == 6

    await _sql(
        stack,
        "UPDATE decision_logs SET outcome = 'allow', result = :result "
        "WHERE decision_id IN ('c2', 'c4')",
        result=json.dumps({"outcome": "allow"}),
    )
    report = await _verify(client, auditor)
    assert report["ok"] is False
    assert report["checked"] == 2
    broken = report["first_broken"]
    assert broken["sequence"] == 3
    assert broken["decision_id"] == "c2"
    assert broken["reason"] == "altered"
    assert broken["expected"] != broken["found"]


async def test_chain_detects_a_deleted_decision_and_a_rewritten_tail(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    await _ingest(
        client, credential, [_decision(f"x{i}", T0 + timedelta(seconds=i)) for i in range(4)]
    )
    await _sql(stack, "DELETE FROM decision_logs WHERE decision_id = 'x1'")
    report = await _verify(client, owner)
    assert report["first_broken"]["sequence"] == 2
    assert report["first_broken"]["reason"] == "missing"

    await _ingest(client, credential, [_decision("x1", T0 + timedelta(seconds=1))])
    await _sql(stack, "DELETE FROM decision_logs WHERE decision_id = 'x1'")
    await _sql(stack, "DELETE FROM decision_logs WHERE sequence = 5")  # the last one
    tail = await _verify(client, owner)
    assert tail["first_broken"]["reason"] == "missing"
    assert tail["first_broken"]["sequence"] == 2


async def test_concurrent_ingests_keep_one_chain(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    gateways = [(await _gateway(client, owner, f"edge-{n}"))["credential"] for n in range(3)]
    batches = [
        [_decision(f"g{b}-{i}", T0 + timedelta(seconds=i, milliseconds=b)) for i in range(20)]
        for b in range(12)
    ]
    # Overlapping resends must not fork the chain either.
    batches.append([*batches[0][:5], _decision("g-extra", T0)])
    results = await asyncio.gather(
        *(_ingest(client, gateways[n % 3], batch) for n, batch in enumerate(batches))
    )
    assert sum(r["accepted"] for r in results) == 12 * 20 + 1
    async with stack.db.session(SYSTEM) as session:
        sequences = sorted(
            (await session.execute(text("SELECT sequence FROM decision_logs"))).scalars()
        )
    assert sequences == list(range(1, 12 * 20 + 2))
    report = await _verify(client, owner)
    assert report["ok"] is True
    assert report["checked"] == 241
    assert report["head_sequence"] == 241


async def test_retention_expires_old_decisions_and_the_chain_still_verifies(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    credential = (await _gateway(client, owner))["credential"]
    now = utcnow()
    old, older = now - timedelta(days=420), now - timedelta(days=60)
    # Ingest order interleaves old and recent decisions: expiry leaves gaps in the chain.
    await _ingest(
        client,
        credential,
        [
            _decision("keep-1", now - timedelta(hours=2)),
            _decision("old-1", old),
            _decision("keep-2", now - timedelta(hours=1)),
            _decision("old-2", old + timedelta(seconds=1)),
            _decision("sixty-days", older),
            _decision("keep-3", now),
        ],
    )
    if not stack.db.is_sqlite:
        async with stack.db.engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT to_regclass(:name) IS NOT NULL"),
                {"name": partition_name(month_of(old))},
            )
        assert exists, "ingest creates the month's partition"

    # Default retention (365 days) expires the two 420-day-old decisions, through the CLI.
    env = {**os.environ, "KAIZEN_DATABASE_URL": stack.settings.resolved_database_url}
    env["KAIZEN_HOME"] = str(stack.settings.home)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaizen_studio.cli",
        "db",
        "expire-decisions",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "expired 2 decision(s) of 1 organisation(s)" in out.decode()
    if not stack.db.is_sqlite:
        assert partition_name(month_of(old)) in out.decode(), out.decode()
        async with stack.db.engine.connect() as connection:
            gone = await connection.scalar(
                text("SELECT to_regclass(:name) IS NULL"), {"name": partition_name(month_of(old))}
            )
        assert gone, "the expired month's partition is dropped whole"
    assert set(await _ids(client, owner)) == {"keep-1", "keep-2", "keep-3", "sixty-days"}
    report = await _verify(client, owner)
    assert report["ok"] is True, report
    assert report["checked"] == 4
    assert report["expired_ranges"] == 2

    # An owner shortens retention (audited); the 60-day-old decision goes next.
    viewer = await member(client, owner, "auditor")
    refused = await client.put(
        "/api/v1/decisions/retention", json={"retention_days": 30}, headers=viewer.headers
    )
    assert refused.status_code == 403
    bad = await client.put(
        "/api/v1/decisions/retention", json={"retention_days": 0}, headers=owner.headers
    )
    assert bad.status_code == 422
    assert "retention_days" in bad.text
    changed = await client.put(
        "/api/v1/decisions/retention", json={"retention_days": 30}, headers=owner.headers
    )
    assert changed.status_code == 200
    assert changed.json()["retention_days"] == 30
    from control_plane.services.decision_retention import expire

    expired = await expire(stack.db)
    assert expired.deleted == 1
    assert set(await _ids(client, owner)) == {"keep-1", "keep-2", "keep-3"}
    report = await _verify(client, owner)
    assert report["ok"] is True
    assert report["checked"] == 3
    retention = (await client.get("/api/v1/decisions/retention", headers=owner.headers)).json()
    assert retention["retention_days"] == 30
    assert retention["expired_before"] is not None
    actions = [
        e["action"]
        for e in (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    ]
    assert actions.count("decisions.expire") == 2
    assert "decisions.retention.update" in actions

    # A decision removed outside retention is still reported.
    await _sql(stack, "DELETE FROM decision_logs WHERE decision_id = 'keep-2'")
    broken = (await _verify(client, owner))["first_broken"]
    assert broken["sequence"] == 3
    assert broken["reason"] == "missing"


def _opa_event(decision_id: str, result: Any, **extra: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "timestamp": "2026-10-05T10:00:00.123456789Z",
        "path": "kaizen/authz/allow",
        "input": {
            "principal": {"id": "user:opa@example.com"},
            "action": "invoke",
            "resource": {"id": "agent:support-bot", "workspace": "prod"},
        },
        "result": result,
        "bundles": {"kaizen": {"revision": "7"}},
        "labels": {"id": "opa-instance-1", "version": "1.0.0"},
        "metrics": {"timer_server_handler_ns": 123456},
        "requested_by": "127.0.0.1:5000",
        "nd_builtin_cache": {},
        **extra,
    }


async def test_opa_decision_log_uploads(client: httpx.AsyncClient, owner: Account) -> None:
    credential = (await _gateway(client, owner))["credential"]
    events = [
        _opa_event("opa-1", True),
        _opa_event("opa-2", {"allow": False, "deny": ["not on the list"]}),
        _opa_event("opa-3", {"outcome": "require_approval", "reasons": ["prod deploy"]}),
    ]
    body = gzip.compress(json.dumps(events).encode())
    headers = {
        **_bearer(credential),
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    first = await client.post("/api/v1/decisions/opa", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 3, "duplicates": 0}
    again = await client.post("/api/v1/decisions/opa", content=body, headers=headers)
    assert again.json() == {"accepted": 0, "duplicates": 3}
    plain = await client.post(
        "/api/v1/decisions/opa",
        content=json.dumps([_opa_event("opa-4", None)]),
        headers=_bearer(credential),
    )
    assert plain.json() == {"accepted": 1, "duplicates": 0}

    listed = (
        await client.get(
            "/api/v1/decisions", params={"bundle_revision": "7"}, headers=owner.headers
        )
    ).json()["items"]
    by_id = {d["decision_id"]: d for d in listed}
    assert {k: v["outcome"] for k, v in by_id.items()} == {
        "opa-1": "allow",
        "opa-2": "deny",
        "opa-3": "require_approval",
        "opa-4": "deny",
    }
    assert by_id["opa-1"]["source"] == "opa"
    assert by_id["opa-1"]["principal"] == "user:opa@example.com"
    assert by_id["opa-1"]["instance"] == "opa-instance-1"
    assert by_id["opa-1"]["duration_us"] == 123
    assert by_id["opa-1"]["time"].startswith("2026-10-05T10:00:00.123456")
    assert by_id["opa-2"]["result"]["reasons"] == ["not on the list"]
    assert by_id["opa-2"]["result"]["opa"]["path"] == "kaizen/authz/allow"
    assert await _ids(client, owner, reason="prod deploy") == ["opa-3"]
    assert (await _verify(client, owner))["ok"] is True

    for bad_body, extra_headers, field in (
        (b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}, "body"),
        (b'{"decision_id": "x"}', {}, "body"),
        (json.dumps([{"timestamp": "2026-10-05T10:00:00Z"}]).encode(), {}, "0.decision_id"),
        (json.dumps([_opa_event("bad time", True)]).encode(), {}, "0.decision_id"),
        (
            json.dumps([_opa_event("ok", True, timestamp="0001-01-01T00:00:00+05:30")]).encode(),
            {},
            "0.timestamp",
        ),
    ):
        refused = await client.post(
            "/api/v1/decisions/opa",
            content=bad_body,
            headers={**_bearer(credential), **extra_headers},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"] == field
    bomb = gzip.compress(b"[" + b" " * (17 * 1024 * 1024) + b"]")
    too_big = await client.post("/api/v1/decisions/opa", content=bomb, headers=headers)
    assert too_big.status_code == 413
    as_user = await client.post("/api/v1/decisions/opa", content=body, headers=owner.headers)
    assert as_user.status_code == 401


async def test_another_tenants_decisions_are_invisible(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    credential = (await _gateway(client, alice))["credential"]
    await _ingest(client, credential, [_decision("alice-secret", T0)])
    assert (
        await client.get("/api/v1/decisions/alice-secret", headers=bob.headers)
    ).status_code == 404
    assert await _ids(client, bob) == []
    assert await _ids(client, bob, decision_id="alice-secret") == []
    exported = await client.get("/api/v1/decisions/export", headers=bob.headers)
    assert exported.status_code == 200
    assert exported.text == ""
    assert (await _verify(client, bob))["checked"] == 0
    counts = (
        await client.get(
            "/api/v1/decisions/aggregates",
            params={"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()},
            headers=bob.headers,
        )
    ).json()
    assert counts["keys"] == []
    assert counts["buckets"][0]["total"] == 0
    # Bob's own gateway reporting the same decision id stores Bob's copy, not Alice's.
    bobs = (await _gateway(client, bob))["credential"]
    assert (await _ingest(client, bobs, [_decision("alice-secret", T0)]))["accepted"] == 1
    assert (await _verify(client, alice))["checked"] == 1


async def test_bad_filters_are_422_naming_the_field(
    client: httpx.AsyncClient, owner: Account
) -> None:
    viewer = await member(client, owner, "viewer")
    assert (await client.get("/api/v1/decisions", headers=viewer.headers)).status_code == 403
    for path, params, field in (
        ("/api/v1/decisions", {"colour": "red"}, "colour"),
        ("/api/v1/decisions", {"since": "yesterday"}, "since"),
        ("/api/v1/decisions", {"since": "2026-11-26T10:00:00"}, "since"),  # no zone
        ("/api/v1/decisions", {"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ("/api/v1/decisions/aggregates", {"until": "9999-12-31T23:00:00Z"}, "until"),
        ("/api/v1/decisions", {"since": T0.isoformat(), "until": "2026-01-01T00:00:00Z"}, "until"),
        ("/api/v1/decisions", {"outcome": "maybe"}, "outcome"),
        ("/api/v1/decisions", {"channel": "smtp"}, "channel"),
        ("/api/v1/decisions", {"gateway": "edge"}, "gateway"),
        ("/api/v1/decisions", {"bundle_revision": "latest"}, "bundle_revision"),
        ("/api/v1/decisions", {"cursor": "not-a-cursor"}, "cursor"),
        ("/api/v1/decisions", {"limit": "0"}, "limit"),
        ("/api/v1/decisions", {"principal": "x" * 201}, "principal"),
        ("/api/v1/decisions/export", {"format": "xml"}, "format"),
        ("/api/v1/decisions/aggregates", {"by": "action"}, "by"),
        ("/api/v1/decisions/aggregates", {"interval": "week"}, "interval"),
        ("/api/v1/decisions/aggregates", {"since": "2020-01-01T00:00:00Z"}, "since"),
    ):
        response = await client.get(path, params=params, headers=owner.headers)
        assert response.status_code == 422, (path, params, response.text)
        fields = [d["field"] for d in response.json()["error"]["details"]]
        assert field in fields, (path, params, fields)
    out_of_range = await client.post(
        "/api/v1/decisions/ingest",
        json={"decisions": [_decision("ancient", datetime(1900, 1, 1, tzinfo=UTC))]},
        headers=_bearer((await _gateway(client, owner))["credential"]),
    )
    assert out_of_range.status_code == 422
    assert out_of_range.json()["error"]["details"][0]["field"] == "decisions.0.time"


async def test_hooks_see_only_newly_stored_decisions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    seen: list[tuple[str, str]] = []

    async def record(_session: Any, rows: ingest_hooks.StoredRows) -> None:
        seen.extend((row["decision_id"], row["outcome"]) for row in rows)

    ingest_hooks.register(record)
    ingest_hooks.register(record)  # once only
    try:
        credential = (await _gateway(client, owner))["credential"]
        batch = [_decision("h1", T0, outcome="require_approval"), _decision("h2", T0)]
        await _ingest(client, credential, batch)
        await _ingest(client, credential, [*batch, _decision("h3", T0, outcome="deny")])
    finally:
        ingest_hooks.unregister(record)
    assert seen == [("h1", "require_approval"), ("h2", "allow"), ("h3", "deny")]


@pytest.fixture(params=["embedded", "production"])
async def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Any, postgres_databases: PostgresDatabases
) -> Any:
    if request.param == "embedded":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}")
    else:
        db = Database(await postgres_databases.create("m5_migration"))
    yield db
    await db.dispose()


async def test_migration_moves_0003_decisions_into_the_chained_store(fresh_database: Any) -> None:
    db: Database = fresh_database
    await upgrade(db, "0004")
    organization = uuid.uuid4()
    async with db.engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES (:id, 'Old', :at)"),
            {"id": organization.hex if db.is_sqlite else organization, "at": T0},
        )
        for n in range(3):
            await connection.execute(
                text(
                    "INSERT INTO decision_logs (id, organization_id, created_at, decision_id, "
                    "time, principal, action, resource, channel, outcome, input, result) "
                    "VALUES (:id, :org, :at, :did, :at, 'user:a@x.io', 'invoke', "
                    "'agent:b', 'api', 'allow', :input, :result)"
                ),
                {
                    "id": uuid.uuid4().hex if db.is_sqlite else uuid.uuid4(),
                    "org": organization.hex if db.is_sqlite else organization,
                    "at": T0 + timedelta(days=40 * n),
                    "did": f"old-{n}",
                    "input": json.dumps({"resource": {"workspace": "prod"}}),
                    "result": json.dumps({"outcome": "allow", "reasons": ["ok"]}),
                },
            )
    await upgrade(db, "0005")

    from control_plane.services.decision_chain import verify

    report = await verify(lambda: db.session(organization))
    assert report.ok
    assert report.checked == 3
    assert report.head_sequence == 3
    async with db.session(organization) as session:
        rows = (
            await session.execute(
                text("SELECT decision_id, sequence, workspace, reasons FROM decision_logs")
            )
        ).all()
    assert sorted(rows) == [(f"old-{n}", n + 1, "prod", "ok") for n in range(3)]

    # And back down: the 0003 table with its rows.
    from alembic import command

    def downgrade(connection: Any) -> None:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")

    async with db.engine.begin() as connection:
        await connection.run_sync(downgrade)
        count = await connection.scalar(text("SELECT count(*) FROM decision_logs"))
    assert count == 3
