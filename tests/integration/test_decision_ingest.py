"""Decision ingest's fast path: the stored input and output are exactly what was sent
(whatever JSON it holds), the chain verifies, bad records are a 4xx naming the record, and
a partition dropped behind this process's back is made again, not a failed batch."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from control_plane.db.partitions import month_of, partition_name
from tests.conftest import Account, Stack

T0 = datetime(2026, 9, 14, 8, 30, 0, 250000, tzinfo=UTC)
AWKWARD: dict[str, Any] = {
    "principal": {"id": "user:zoë@example.com", "type": "user"},
    "action": "invoke",
    "resource": {"type": "agent", "id": "agent:bot-☃", "workspace": "prod"},
    "channel": "mcp",
    "tool": {
        "name": "search",
        "arguments": {
            "z": [1, 2.5, 1e16, -0.0, 2**70, True, None],
            "a": 'tab\t, quote ", backslash \\, nul \x00, emoji 🙂, escaped \\u0000',
            "nested": {"b": {"d": [], "c": {}}},
        },
    },
}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _decision(decision_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "time": T0.isoformat(),
        "input": AWKWARD,
        "result": {"decision_id": decision_id, "outcome": "deny", "reasons": ["no ☃"]},
        "duration_us": 12,
        "instance": "sidecar-0/7",
    } | changes


async def _credential(client: httpx.AsyncClient, owner: Account) -> str:
    response = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test:8080"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    credential: str = response.json()["credential"]
    return credential


async def _post(
    client: httpx.AsyncClient, credential: str, body: bytes, **more: str
) -> httpx.Response:
    headers = _bearer(credential) | {"Content-Type": "application/json"} | more
    return await client.post("/api/v1/decisions/ingest", content=body, headers=headers)


async def test_stored_exactly_as_sent_and_the_chain_verifies(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = await _credential(client, owner)
    batch = [_decision(f"k{n}", time=T0.replace(second=n).isoformat()) for n in range(5)]
    body = json.dumps({"decisions": [*batch, batch[0]]}).encode()
    first = await _post(client, credential, body)
    assert first.json() == {"accepted": 5, "duplicates": 1}, first.text
    again = await _post(client, credential, body)
    assert again.json() == {"accepted": 0, "duplicates": 6}

    detail = (await client.get("/api/v1/decisions/k3", headers=owner.headers)).json()
    assert detail["input"] == json.loads(json.dumps(AWKWARD))
    assert detail["input"]["tool"]["arguments"]["z"][4] == 2**70
    assert detail["result"]["reasons"] == ["no ☃"]
    assert (detail["principal"], detail["resource"], detail["outcome"]) == (
        "user:zoë@example.com",
        "agent:bot-☃",
        "deny",
    )
    assert detail["sequence"] == 4
    verified = (await client.get("/api/v1/decisions/verify", headers=owner.headers)).json()
    assert (verified["ok"], verified["checked"], verified["head_sequence"]) == (True, 5, 5)


async def test_a_tampered_input_breaks_the_chain_there(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    credential = await _credential(client, owner)
    body = json.dumps({"decisions": [_decision(f"t{n}") for n in range(3)]}).encode()
    assert (await _post(client, credential, body)).status_code == 200
    async with stack.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE decision_logs SET input = :changed WHERE decision_id = 't1'"),
            {"changed": json.dumps({**AWKWARD, "action": "read"})},
        )
    broken = (await client.get("/api/v1/decisions/verify", headers=owner.headers)).json()
    assert broken["ok"] is False
    assert (broken["first_broken"]["decision_id"], broken["first_broken"]["reason"]) == (
        "t1",
        "altered",
    )


async def test_bad_records_are_422_naming_the_record_and_store_nothing(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = await _credential(client, owner)
    good = json.dumps(_decision("fine")).encode()
    cases = [
        (
            b'{"decisions":[' + good + b',{"decision_id":"nan","time":"2026-09-14T08:30:00Z",'
            b'"input":{"x":NaN},"result":{}}]}',
            "decisions.1",
        ),
        (
            b'{"decisions":[' + good + b',{"decision_id":"sur","time":"2026-09-14T08:30:00Z",'
            b'"input":{"x":"\\ud800"},"result":{}}]}',
            "decisions.1",
        ),
        (b'{"decisions":[' + good + b"," + good[:-1] + b',"extra":1}]}', "decisions.1.extra"),
        (
            json.dumps({"decisions": [_decision("n", instance="a\x00b")]}).encode(),
            "decisions.0.instance",
        ),
        (json.dumps({"decisions": [_decision("bad id")]}).encode(), "decisions.0.decision_id"),
        (
            json.dumps({"decisions": [_decision("t", time="yesterday")]}).encode(),
            "decisions.0.time",
        ),
        # At the calendar's edge: UTC of this is before year 1 (no partition, no sort key).
        (
            json.dumps({"decisions": [_decision("t", time="0001-01-01T00:00:00+05:30")]}).encode(),
            "decisions.0.time",
        ),
        (
            json.dumps({"decisions": [_decision("t", time="9999-12-31T23:59:59-05:00")]}).encode(),
            "decisions.0.time",
        ),
        (b'{"decisions": [', "body"),
        (b"\xff\xfe", "body"),
        (b"[]", "body"),
    ]
    for body, field in cases:
        response = await _post(client, credential, body)
        assert response.status_code == 422, (body[-80:], response.text)
        fields = [d["field"] for d in response.json()["error"]["details"]]
        assert field in fields, (body[-80:], fields, response.text)
    listed = (await client.get("/api/v1/decisions", headers=owner.headers)).json()
    assert listed["items"] == []


async def test_a_partition_dropped_by_another_process_is_made_again(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    credential = await _credential(client, owner)
    body = json.dumps({"decisions": [_decision("p1")]}).encode()
    assert (await _post(client, credential, body)).json()["accepted"] == 1
    if stack.db.is_sqlite:
        return  # one plain table there
    name = partition_name(month_of(T0))
    async with stack.db.engine.begin() as connection:  # as `db expire-decisions` elsewhere would
        await connection.execute(text(f'DROP TABLE "{name}"'))
    body = json.dumps({"decisions": [_decision("p2")]}).encode()
    response = await _post(client, credential, body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    listed = (await client.get("/api/v1/decisions", headers=owner.headers)).json()
    assert [d["decision_id"] for d in listed["items"]] == ["p2"]


async def test_gzip_batches_are_stored_as_the_same_batch_sent_plain(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = await _credential(client, owner)
    batch = [_decision(f"z{n}", time=T0.replace(second=n).isoformat()) for n in range(4)]
    plain = json.dumps({"decisions": batch}).encode()
    packed = await _post(client, credential, gzip.compress(plain), **{"Content-Encoding": "gzip"})
    assert packed.json() == {"accepted": 4, "duplicates": 0}, packed.text
    again = await _post(client, credential, plain)  # the same records, plain: duplicates
    assert again.json() == {"accepted": 0, "duplicates": 4}
    detail = (await client.get("/api/v1/decisions/z2", headers=owner.headers)).json()
    assert detail["input"] == json.loads(json.dumps(AWKWARD))
    verified = (await client.get("/api/v1/decisions/verify", headers=owner.headers)).json()
    assert (verified["ok"], verified["checked"]) == (True, 4)


async def test_a_gzip_bomb_is_413_and_bad_gzip_422_and_bad_records_inside_are_named(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """The attack: a ~17 KiB body that inflates past KAIZEN_MAX_INGEST_BYTES (16 MiB).
    Decompression stops at the limit: 413, nothing stored."""
    credential = await _credential(client, owner)
    gz = {"Content-Encoding": "gzip"}
    padding = b" " * (17 * 1024 * 1024)
    bomb = gzip.compress(b'{"decisions":[' + padding + b"]}", compresslevel=9)
    assert len(bomb) < 64 * 1024
    too_big = await _post(client, credential, bomb, **gz)
    assert too_big.status_code == 413, too_big.text
    good = json.dumps({"decisions": [_decision("g1")]}).encode()
    for body, field in [
        (b"\x1f\x8b not gzip at all", "body"),
        (gzip.compress(good)[:-12], "body"),  # truncated
        (gzip.compress(b'{"decisions": ['), "body"),
        (
            gzip.compress(json.dumps({"decisions": [_decision("bad id")]}).encode()),
            "decisions.0.decision_id",
        ),
    ]:
        response = await _post(client, credential, body, **gz)
        assert response.status_code == 422, (body[:20], response.text)
        fields = [d["field"] for d in response.json()["error"]["details"]]
        assert field in fields, (body[:20], fields)
    listed = (await client.get("/api/v1/decisions", headers=owner.headers)).json()
    assert listed["items"] == []
