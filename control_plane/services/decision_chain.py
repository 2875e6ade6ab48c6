"""The decision log's hash chain per organisation and its verification.

Each stored decision gets the organisation's next `sequence` (ingest order) and
`chain_hash = SHA-256(previous chain_hash ‖ canonical JSON of the stored record)`, the
first one chained to `GENESIS`. Ingest locks the organisation's `DecisionChain` row (a row
lock on PostgreSQL; SQLite's single writer already serialises), so concurrent batches
never fork the chain. Retention (`decision_retention.py`) records the sequence ranges it
removed with the hash of each range's last link, so verification steps over exactly those
and reports any other missing or altered link.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import DecisionChain, DecisionLog

GENESIS = "0" * 64
DEFAULT_RETENTION_DAYS = 365
# What the hash covers: every stored column of the record.
CHAINED = (
    "id",
    "organization_id",
    "sequence",
    "decision_id",
    "time",
    "created_at",
    "source",
    "gateway_id",
    "instance",
    "principal",
    "action",
    "resource",
    "workspace",
    "channel",
    "outcome",
    "reasons",
    "bundle_revision",
    "duration_us",
    "input",
    "result",
)
SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# The chain's canonical form is the standard library's text above; orjson writes the same
# bytes for JSON values ten times faster, except where its text shows one of these: a float
# below 1e-4 (orjson writes `1e-7` and `0.00001` where Python writes `1e-07` and `1e-05`)
# and `null` from a value that holds NaN or infinity (orjson writes them as null; the
# standard encoder refuses them; a `null` from None is looked into, not re-encoded).
# Either, or anything orjson refuses (integers beyond 64 bits, lone surrogates, types it
# would serialise and the standard encoder would not), takes the standard encoder, so the
# text is byte-identical always (tests/unit/test_decision_chain_encoding.py proves it).
_FAST = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_DIGITS = frozenset(b"0123456789")


_JSON_LEAVES = frozenset((str, int, bool, type(None)))


def _may_hold_nan(value: Any) -> bool:
    """Whether `value` holds a float that is not finite, or anything but plain JSON values
    (orjson writes NaN and infinity as `null`; the standard encoder refuses them). A walk
    costs a third of the standard encoder's pass, and only text with a `null` takes it."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list or kind is tuple:
            pending.extend(item)
        elif kind is float:
            if item - item != 0.0:  # NaN and ±infinity; finite x - x is 0.0
                return True
        elif kind not in _JSON_LEAVES:
            return True
    return False


def _unsure(text: bytes, value: Any) -> bool:
    """Whether orjson's `text` of `value` may differ from the standard encoder's (substring
    tests, which are fast; a regular expression over the text costs as much as encoding
    it)."""
    if b"0.0000" in text or (b"null" in text and _may_hold_nan(value)):
        return True
    at = text.find(b"e-")
    while at > 0:
        if text[at - 1] in _DIGITS:
            return True
        at = text.find(b"e-", at + 2)
    return False


def _canonical_text(value: Any) -> str:
    try:
        fast = orjson.dumps(value, option=_FAST)
    except TypeError:  # orjson.JSONEncodeError is one
        return _ENCODER.encode(value)
    return _ENCODER.encode(value) if _unsure(fast, value) else fast.decode()


_AS_IS = frozenset((str, int, bool, type(None)))
_PLAIN_CLASSES = (uuid.UUID, datetime)
_PLAIN_TYPES = frozenset(_PLAIN_CLASSES)


def _scalars_text(record: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """`_canonical_text` of a run of scalar columns, where `null` is common and safe when
    no float is among them (no NaN)."""
    columns, floats = {}, False
    for name in names:
        value = record[name]
        if type(value) not in _AS_IS:
            floats = floats or isinstance(value, float)
            value = _plain(value)
        columns[name] = value
    if floats:
        return _canonical_text(columns)
    try:
        return orjson.dumps(columns, option=_FAST).decode()
    except TypeError:
        return _ENCODER.encode(columns)


_JSON_COLUMNS = ("input", "result")


def _layout(names: Sequence[str]) -> list[str | tuple[str, ...]]:
    """`names` with each run of scalar columns grouped (encoded as one object) and the
    JSON columns alone (their text may come encoded already)."""
    layout: list[str | tuple[str, ...]] = []
    for name in names:
        if name in _JSON_COLUMNS:
            layout.append(name)
        elif layout and isinstance(layout[-1], tuple):
            layout[-1] = (*layout[-1], name)
        else:
            layout.append((name,))
    return layout


_SORTED = sorted(CHAINED)
_HEAD_NAMES = tuple(_SORTED[: _SORTED.index("sequence")])
_TAIL_NAMES = tuple(_SORTED[_SORTED.index("sequence") + 1 :])
_HEAD = _layout(_HEAD_NAMES)
_TAIL = _layout(_TAIL_NAMES)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode(value: Any) -> str:
    """Canonical JSON text of one value: sorted keys, no whitespace, not ASCII-escaped;
    raises ValueError on NaN or infinity."""
    return _canonical_text(_plain(value))


@dataclass(frozen=True)
class Canonical:
    """A record's canonical JSON around its `sequence`, which is known only under the chain
    lock: everything else is encoded before the lock is taken."""

    head: bytes
    tail: bytes

    def with_sequence(self, sequence: int) -> bytes:
        return b'%s,"sequence":%d,%s' % (self.head, sequence, self.tail)


def _members(
    record: Mapping[str, Any], layout: list[str | tuple[str, ...]], encoded: Mapping[str, str]
) -> str:
    parts = []
    for item in layout:
        if isinstance(item, tuple):  # `{…}` of the run, braces dropped: its members in order
            parts.append(_scalars_text(record, item)[1:-1])
        else:
            text = encoded[item] if item in encoded else encode(record[item])
            parts.append(f'"{item}":{text}')
    return ",".join(parts)


def _object(
    record: Mapping[str, Any],
    names: tuple[str, ...],
    encoded: Mapping[str, str],
    memo: dict[Any, str],
) -> bytes | None:
    """The columns `names` (sorted) as one JSON object in one orjson call, JSON columns as
    their canonical text; None when a column is of a type whose text orjson may write
    differently from the standard encoder (a float) or not at all."""
    members: dict[str, Any] = {}
    for name in names:
        value = record[name]
        kind = type(value)
        if name in _JSON_COLUMNS:
            text = encoded.get(name)
            members[name] = orjson.Fragment(encode(value) if text is None else text)
        elif kind in _AS_IS:
            members[name] = value
        elif kind in _PLAIN_TYPES or isinstance(value, _PLAIN_CLASSES):  # asyncpg's UUID too
            plain = memo.get(value)
            if plain is None:
                plain = memo[value] = _plain(value)
            members[name] = plain
        else:
            return None
    try:
        return orjson.dumps(members)  # keys already in order
    except TypeError:  # integers past 64 bits, lone surrogates
        return None


def prepare(
    record: Mapping[str, Any],
    encoded: Mapping[str, str] | None = None,
    *,
    memo: dict[Any, str] | None = None,
) -> Canonical:
    """`record` (all but its sequence) canonically encoded; `encoded` holds the `encode`d
    text of JSON columns already encoded (ingest stores that same text); `memo` keeps the
    text of ids and times across the records of a batch.

    Raises ValueError on NaN or infinity and UnicodeEncodeError on a lone surrogate."""
    done = encoded or {}
    seen = {} if memo is None else memo
    head = _object(record, _HEAD_NAMES, done, seen)
    tail = _object(record, _TAIL_NAMES, done, seen) if head is not None else None
    if head is not None and tail is not None:
        return Canonical(head[:-1], tail[1:])
    return Canonical(  # member by member, each as the standard encoder writes it
        ("{" + _members(record, _HEAD, done)).encode(),
        (_members(record, _TAIL, done) + "}").encode(),
    )


def canonical(record: Mapping[str, Any]) -> bytes:
    """Every chained column as one JSON object: sorted keys, no whitespace, UTF-8."""
    return prepare(record).with_sequence(record["sequence"])


def link(prev_hash: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(record)).hexdigest()


async def lock_chain(session: AsyncSession, organization_id: uuid.UUID) -> DecisionChain:
    """The organisation's chain row, created on first use, locked until the transaction ends."""
    locked = (
        select(DecisionChain)
        .where(DecisionChain.organization_id == organization_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    chain = await session.scalar(locked)
    if chain is not None:
        return chain
    values = {
        "id": uuid.uuid4(),
        "organization_id": organization_id,
        "created_at": utcnow(),
        "head_sequence": 0,
        "head_hash": GENESIS,
        "retention_days": DEFAULT_RETENTION_DAYS,
        "expired": [],
    }
    table: Table = DecisionChain.__table__  # type: ignore[assignment]
    insert = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    # A concurrent first ingest may have made it meanwhile: then this waits for its lock.
    await session.execute(
        insert.values(**values).on_conflict_do_nothing(index_elements=["organization_id"])
    )
    chain = await session.scalar(locked)
    assert chain is not None  # inserted above or by a concurrent first ingest
    return chain


def append(
    chain: DecisionChain, rows: Sequence[dict[str, Any]], prepared: Sequence[Canonical]
) -> None:
    """Give `rows` (new records in ingest order, each with its `prepare`d form) their
    sequence and chain hash."""
    sequence, prev = chain.head_sequence, chain.head_hash
    for row, form in zip(rows, prepared, strict=True):
        sequence += 1
        row["sequence"] = sequence
        row["chain_hash"] = prev = hashlib.sha256(
            prev.encode() + form.with_sequence(sequence)
        ).hexdigest()
    chain.head_sequence, chain.head_hash = sequence, prev


def merge_ranges(ranges: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Sorted, with adjacent or overlapping ranges joined (keeping the later end's hash)."""
    merged: list[list[Any]] = []
    for first, last, last_hash in sorted((int(a), int(b), str(h)) for a, b, h in ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1][1], merged[-1][2] = last, last_hash
        else:
            merged.append([first, last, last_hash])
    return merged


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    sequence: int
    decision_id: str | None
    expected: str
    found: str
    reason: str  # altered | missing | duplicate | head


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    head_sequence: int
    head_hash: str
    expired_ranges: int
    first_broken: BrokenLink | None = None


class _Walk:
    """The expected next link, stepping over the ranges retention removed."""

    def __init__(self, expired: Iterable[Sequence[Any]]):
        self.all = merge_ranges(expired)
        self.ahead = list(self.all)
        self.sequence, self.prev = 1, GENESIS
        self._skip()

    def _skip(self) -> None:
        while self.ahead and self.ahead[0][0] <= self.sequence:
            _first, last, last_hash = self.ahead.pop(0)
            if last >= self.sequence:
                self.sequence, self.prev = last + 1, last_hash

    def expired(self, sequence: int) -> bool:
        return any(first <= sequence <= last for first, last, _ in self.all)

    def advance(self, chain_hash: str) -> None:
        self.sequence, self.prev = self.sequence + 1, chain_hash
        self._skip()


async def verify(open_session: SessionFactory, *, batch: int = 1000) -> ChainReport:
    """Recompute the caller's chain in sequence order, a batch per short transaction."""
    async with open_session() as session:
        chain = await session.scalar(select(DecisionChain))
    if chain is None:
        return ChainReport(True, 0, 0, GENESIS, 0)
    head_sequence, head_hash = chain.head_sequence, chain.head_hash
    walk = _Walk(chain.expired)
    checked, after = 0, 0

    def report(broken: BrokenLink | None) -> ChainReport:
        return ChainReport(
            broken is None, checked, head_sequence, head_hash, len(chain.expired), broken
        )

    columns = [getattr(DecisionLog, name) for name in CHAINED] + [DecisionLog.chain_hash]
    while after < head_sequence:
        async with open_session() as session:
            rows = (
                await session.execute(
                    select(*columns)
                    .where(DecisionLog.sequence > after, DecisionLog.sequence <= head_sequence)
                    .order_by(DecisionLog.sequence)
                    .limit(batch)
                )
            ).all()
        for row in rows:
            record: dict[str, Any] = dict(row._mapping)
            sequence = record["sequence"]
            if walk.expired(sequence):
                continue  # removed by retention; its partition is dropped later
            if sequence < walk.sequence:
                return report(
                    BrokenLink(
                        sequence,
                        record["decision_id"],
                        f"sequence {walk.sequence}",
                        f"sequence {sequence}",
                        "duplicate",
                    )
                )
            if sequence > walk.sequence:
                return report(
                    BrokenLink(
                        walk.sequence,
                        None,
                        f"sequence {walk.sequence}",
                        f"sequence {sequence} ({record['decision_id']})",
                        "missing",
                    )
                )
            expected = link(walk.prev, record)
            if expected != record["chain_hash"]:
                return report(
                    BrokenLink(
                        sequence, record["decision_id"], expected, record["chain_hash"], "altered"
                    )
                )
            walk.advance(record["chain_hash"])
            checked += 1
        if len(rows) < batch:
            break
        after = rows[-1]._mapping["sequence"]
    if walk.sequence <= head_sequence:
        return report(
            BrokenLink(walk.sequence, None, f"sequence {walk.sequence}", "end of log", "missing")
        )
    if walk.prev != head_hash:
        return report(BrokenLink(head_sequence, None, head_hash, walk.prev, "head"))
    return report(None)
