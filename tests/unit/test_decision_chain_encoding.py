"""The chain's canonical text is the standard library's (`json`, sorted keys, compact, not
ASCII-escaped): ingest writes it with orjson where orjson's bytes are provably the same and
with `json` elsewhere. Every stored chain hashes these bytes, so a single differing byte
would break verification of records already stored: the golden cases pin the text, the
property test compares with `json` over arbitrary JSON values."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from asyncpg.pgproto.pgproto import UUID as asyncpg_uuid
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.services import decision_chain


def _reference(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


GOLDEN: list[tuple[Any, str]] = [
    # floats where orjson and Python's repr part ways, and their neighbours
    (1e-7, "1e-07"),
    (2.5e-07, "2.5e-07"),
    (1e-05, "1e-05"),
    (9.999e-05, "9.999e-05"),
    (0.0001, "0.0001"),
    (0.00012, "0.00012"),
    (5e-324, "5e-324"),
    (1.23e-308, "1.23e-308"),
    (-0.0, "-0.0"),
    (0.1, "0.1"),
    (1e15, "1000000000000000.0"),
    (9999999999999998.0, "9999999999999998.0"),
    (1e16, "1e+16"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    ({"usd": 0.01, "tokens": 1200}, '{"tokens":1200,"usd":0.01}'),
    # integers past 64 bits (orjson refuses them)
    (2**64, "18446744073709551616"),
    (-(2**63) - 1, "-9223372036854775809"),
    (2**63 - 1, "9223372036854775807"),
    # strings: controls escaped, the rest as is (DEL, line separators, astral, BOM)
    ('\x00\x1f\x7f\u2028\u2029"\\/é😀\ufeff', '"\\u0000\\u001f\x7f\u2028\u2029\\"\\\\/é😀\ufeff"'),
    ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
    # keys in code-point order, whatever their script or plane
    (
        {"é": 1, "e": 2, "😀": 3, "\uffff": 4, "Z": 5, "a": 6},
        '{"Z":5,"a":6,"e":2,"é":1,"\uffff":4,"😀":3}',
    ),
    ({"b": [1, {"z": None, "a": True}], "a": False}, '{"a":false,"b":[1,{"a":true,"z":null}]}'),
    # strings that look like what sends orjson's text to the standard encoder
    ({"user-agent": "1e-5 null 0.00001"}, '{"user-agent":"1e-5 null 0.00001"}'),
    ([], "[]"),
    ({}, "{}"),
]


@pytest.mark.parametrize(("value", "text"), GOLDEN)
def test_golden_texts(value: Any, text: str) -> None:
    assert _reference(value) == text  # the golden text is the standard library's
    assert decision_chain.encode(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"a": [1, math.nan]}])
def test_nan_and_infinity_are_refused_as_before(value: Any) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        decision_chain.encode(value)


def test_a_lone_surrogate_fails_to_encode_as_before() -> None:
    text = decision_chain.encode({"k": "\ud800"})  # the text holds it; UTF-8 cannot
    with pytest.raises(UnicodeEncodeError):
        text.encode()


def test_values_orjson_would_serialise_but_json_refuses_are_refused() -> None:
    class Text(str):
        pass

    assert decision_chain.encode({"k": Text("x")}) == '{"k":"x"}'  # json treats it as str
    with pytest.raises(TypeError):
        decision_chain.encode({"when": datetime(2026, 1, 1, tzinfo=UTC)})
    with pytest.raises(TypeError):
        decision_chain.encode({"id": {1, 2}})


def test_the_scalar_columns_of_a_record_encode_as_json_does() -> None:
    record = {
        "id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "sequence": 3,
        "decision_id": "d-1",
        "time": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        "created_at": datetime(2026, 11, 26, 12, 0, 0, 5, tzinfo=UTC),
        "source": "sidecar",
        "gateway_id": None,
        "instance": None,
        "principal": "user:é😀@example.com",
        "action": "invoke",
        "resource": "agent:bot",
        "workspace": None,
        "channel": "mcp",
        "outcome": "deny",
        "reasons": "a\nb",
        "bundle_revision": "42",
        "duration_us": 2**70,
        "input": {"cost": 1e-7},
        "result": {"outcome": "deny"},
    }
    plain = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in record.items()
    }
    plain = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in plain.items()}
    assert decision_chain.canonical(record) == _reference(plain).encode()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-7, 1e-5, 9.9e-5, 1e16, 1e21, 5e-324, -0.0, 0.01])
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=3000, deadline=None)
@given(_JSON)
def test_fast_text_equals_the_standard_librarys_for_any_json_value(value: Any) -> None:
    try:
        expected = _reference(value)
    except ValueError:
        with pytest.raises(ValueError, match="not JSON compliant"):
            decision_chain.encode(value)
        return
    assert decision_chain.encode(value) == expected


_TEXT = st.none() | st.text(max_size=12)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])
# The times ingest admits (`ingest.check_times`: 1970 to 9998); at the calendar's edges
# a time with an offset has no UTC at all (OverflowError), and ingest refuses it first.
_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=_ZONES
)
_RECORDS = st.fixed_dictionaries(
    {
        "id": st.uuids(),
        "organization_id": st.uuids().map(lambda u: asyncpg_uuid(str(u))),  # as asyncpg reads it
        "sequence": st.integers(min_value=1, max_value=2**40),
        "decision_id": st.text(min_size=1, max_size=12),
        "time": _TIMES,
        "created_at": _TIMES,
        "source": st.sampled_from(["sidecar", "opa"]),
        "gateway_id": st.none() | st.uuids(),
        "instance": _TEXT,
        "principal": _TEXT,
        "action": _TEXT,
        "resource": _TEXT,
        "workspace": _TEXT,
        "channel": _TEXT,
        "outcome": st.sampled_from(["allow", "deny", "unknown"]),
        "reasons": _TEXT,
        "bundle_revision": _TEXT,
        "duration_us": st.none() | st.integers(min_value=0, max_value=2**70) | st.floats(),
        "input": st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
        "result": st.dictionaries(st.text(max_size=6), _JSON, max_size=3),
    }
)


def _plain_record(record: dict[str, Any]) -> dict[str, Any]:
    plain = {}
    for name, value in record.items():
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        plain[name] = value
    return plain


@settings(max_examples=1500, deadline=None)
@given(_RECORDS)
def test_a_records_canonical_bytes_are_the_standard_librarys(record: dict[str, Any]) -> None:
    """Whichever way `prepare` takes (one orjson object per side of the sequence, ids and
    times kept in a batch's memo, or member by member), the bytes are `json`'s."""
    try:
        expected = _reference(_plain_record(record)).encode()
    except (ValueError, UnicodeEncodeError):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            decision_chain.canonical(record)
        return
    memo: dict[Any, str] = {}
    for _ in range(2):  # the second time from the memo
        prepared = decision_chain.prepare(record, memo=memo)
        assert prepared.with_sequence(record["sequence"]) == expected
