"""The decision chain's canonical form: ingest encodes a record in parts (its JSON columns
once, the sequence last); the bytes must be exactly the one-object canonical JSON that
verification recomputes from the stored columns."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from control_plane.services import decision_chain
from control_plane.services.decision_chain import CHAINED, GENESIS, Canonical


def _reference(record: dict[str, Any]) -> bytes:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        return str(value) if isinstance(value, uuid.UUID) else value

    document = {name: plain(record[name]) for name in CHAINED}
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _record(**changes: Any) -> dict[str, Any]:
    record = {
        "id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "sequence": 7,
        "decision_id": "d-1",
        "time": datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        "created_at": datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC),
        "source": "sidecar",
        "gateway_id": None,
        "instance": "sidecar-0/42",
        "principal": "user:zoë@example.com",
        "action": "invoke",
        "resource": "agent:bot",
        "workspace": None,
        "channel": "mcp",
        "outcome": "allow",
        "reasons": 'line one\nline "two"',
        "bundle_revision": "42",
        "duration_us": 180,
        "input": {
            "z": [1, 2.5, 1e16, -0.0, 2**70, True, None, {"b": 1, "a": "\u2603\x00"}],
            "a": {"nested": {"y": "x", "x": "y"}},
        },
        "result": {"outcome": "allow", "reasons": [], "bundle_revision": 42},
    }
    return record | changes


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"gateway_id": uuid.uuid4(), "workspace": "prod", "duration_us": None},
        {"input": {}, "result": {}, "reasons": None, "instance": None},
        {"principal": 'tab\there, quote" and backslash\\', "sequence": 10**12},
    ],
)
def test_parts_are_the_one_object_canonical_json(changes: dict[str, Any]) -> None:
    record = _record(**changes)
    assert decision_chain.canonical(record) == _reference(record)
    texts = {name: decision_chain.encode(record[name]) for name in ("input", "result")}
    prepared = decision_chain.prepare(record, texts)
    assert prepared.with_sequence(record["sequence"]) == _reference(record)
    expected = hashlib.sha256(GENESIS.encode() + _reference(record)).hexdigest()
    assert decision_chain.link(GENESIS, record) == expected


def test_stored_json_text_reads_back_to_the_same_canonical_form() -> None:
    record = _record()
    stored = {name: json.loads(decision_chain.encode(record[name])) for name in ("input", "result")}
    assert decision_chain.canonical(record | stored) == decision_chain.canonical(record)


def test_append_numbers_and_links_in_order() -> None:
    class Head:
        head_sequence, head_hash = 3, "ab" * 32

    rows = [_record(decision_id=f"d-{n}") for n in range(3)]
    forms: list[Canonical] = [decision_chain.prepare(row) for row in rows]
    head = Head()
    decision_chain.append(head, rows, forms)  # type: ignore[arg-type]
    prev = "ab" * 32
    for sequence, row in enumerate(rows, start=4):
        assert row["sequence"] == sequence
        assert row["chain_hash"] == (prev := decision_chain.link(prev, row))
    assert (head.head_sequence, head.head_hash) == (6, prev)


def test_nan_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        decision_chain.prepare(_record(input={"x": float("nan")}))
    with pytest.raises(UnicodeEncodeError):
        decision_chain.prepare(_record(principal="\ud800"))
