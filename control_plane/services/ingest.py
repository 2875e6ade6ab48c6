"""Idempotent ingest of what sidecars and gateways report: decisions and executions.

The organisation comes from the reporting gateway's credential, never from the records.
A record whose id was already stored is counted as a duplicate and left as it was, so a
sender may resend a batch until it is acknowledged. New decisions are hash-chained per
organisation (`decision_chain.py`) and handed to `ingest_hooks` in the same transaction;
the ingest routes parse a sidecar's batch with `parse_batch` and store it through
`into_partitions`, which makes sure its monthly partitions exist first (`db/partitions.py`).
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import pydantic_core
from pydantic import ValidationError
from sqlalchemy import Column, MetaData, Table, Text, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane import observability
from control_plane.db.base import Base, utcnow
from control_plane.db.models import DecisionLog, Execution
from control_plane.db.partitions import (
    PARENT,
    ensure_partitions,
    forget_partitions,
    missing_partition,
    months_needed,
    partition_name,
)
from control_plane.db.session import Database
from control_plane.errors import Invalid, PayloadTooLarge, invalid_fields
from control_plane.schemas.decisions import EARLIEST, LATEST, IngestBatch, IngestRecord
from control_plane.schemas.fleet import ExecutionRecord
from control_plane.services import ingest_hooks
from control_plane.services.decision_chain import Canonical, append, encode, lock_chain, prepare
from control_plane.services.gateways import GatewayIdentity


def _text(value: Any, limit: int) -> str | None:
    # PostgreSQL text cannot hold NUL; these columns are search keys, the JSON keeps it all.
    return value.replace("\x00", "")[:limit] if isinstance(value, str) else None


def _reasons(result: dict[str, Any]) -> str | None:
    reasons = result.get("reasons")
    if not isinstance(reasons, list) or not reasons:
        return None
    return _text("\n".join(str(r) for r in reasons), 10_000)


def _aware(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def decision_row(
    organization_id: uuid.UUID,
    gateway_id: uuid.UUID | None,
    *,
    decision_id: str,
    time: datetime,
    decision_input: dict[str, Any],
    result: dict[str, Any],
    duration_us: int | None,
    instance: str | None,
    source: str,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """The stored form of one decision, with the search columns taken from its input;
    `created_at` (now by default) is when it was ingested, one moment for a whole batch."""
    principal = decision_input.get("principal")
    resource = decision_input.get("resource")
    principal = principal if isinstance(principal, dict) else {}
    resource = resource if isinstance(resource, dict) else {}
    revision = result.get("bundle_revision")
    return {
        "id": uuid.uuid4(),
        "organization_id": organization_id,
        "created_at": created_at or utcnow(),
        "decision_id": decision_id,
        "time": _aware(time),
        "source": source,
        "gateway_id": gateway_id,
        "instance": _text(instance, 200),
        "principal": _text(principal.get("id"), 320),
        "action": _text(decision_input.get("action"), 64),
        "resource": _text(resource.get("id"), 320),
        "workspace": _text(resource.get("workspace"), 100),
        "channel": _text(decision_input.get("channel"), 16),
        "outcome": _text(result.get("outcome"), 32) or "unknown",
        "reasons": _reasons(result),
        "bundle_revision": _text(str(revision), 32) if revision not in (None, "") else None,
        "duration_us": duration_us,
        "input": decision_input,
        "result": result,
    }


def check_times(times: Sequence[datetime], field: str) -> None:
    """Partitions are monthly from 1970 to 9998; anything outside is no decision time.
    `field` names where the N-th time was sent, with `{}` for N: `decisions.{}.time`."""
    for index, moment in enumerate(times):
        try:
            in_range = EARLIEST <= _aware(moment) <= LATEST
        except OverflowError:  # its UTC is outside Python's calendar
            in_range = False
        if not in_range:
            where = field.format(index)
            raise Invalid(
                f"{where}: decision time out of range",
                details=[{"field": where, "message": "between 1970 and 9998"}],
            )


_JSON_COLUMNS = ("input", "result")
_DECISIONS: Table = DecisionLog.__table__  # type: ignore[assignment]
_COLUMNS = tuple(column.name for column in _DECISIONS.columns)
_COPY_ORDER = itemgetter(*_COLUMNS)
# The same table with its JSON columns as text: ingest hands over the text it hashed.
_DECISIONS_AS_TEXT = Table(
    _DECISIONS.name,
    MetaData(),
    *(
        Column(column.name, Text if column.name in _JSON_COLUMNS else column.type)
        for column in _DECISIONS.columns
    ),
)


@dataclass(frozen=True)
class _Encoded:
    texts: dict[str, str]  # the canonical text of `input` and `result`, as stored
    canonical: Canonical


def _encode_rows(rows: Sequence[dict[str, Any]], field: str) -> list[_Encoded]:
    encoded = []
    memo: dict[Any, str] = {}  # the text of ids and times, which repeat across a batch
    for index, row in enumerate(rows):
        try:
            texts = {name: encode(row[name]) for name in _JSON_COLUMNS}
            encoded.append(_Encoded(texts, prepare(row, texts, memo=memo)))
        except ValueError as error:  # UnicodeEncodeError is one too
            message = (
                "text holds a lone surrogate, which is not Unicode"
                if isinstance(error, UnicodeEncodeError)
                else "NaN or infinity is not JSON"
            )
            raise Invalid(
                f"{field}.{index}: {message}",
                details=[{"field": f"{field}.{index}", "message": message}],
            ) from None
    return encoded


# One index probe per id (the unique key leads with organisation and decision id), whatever
# the planner believes of a partition not yet analysed: `decision_id = ANY(:ids)` was planned
# as a scan of the organisation's whole month there, so each batch took longer than the last.
_STORED_IDS = text(
    "SELECT ids.id FROM unnest(CAST(:ids AS varchar[])) AS ids(id) CROSS JOIN LATERAL "
    "(SELECT 1 FROM decision_logs AS d WHERE d.organization_id = :organization_id "
    "AND d.decision_id = ids.id LIMIT 1) AS hit"
)


async def _stored_ids(
    session: AsyncSession, organization_id: uuid.UUID, decision_ids: list[str]
) -> set[str]:
    if session.get_bind().dialect.name == "postgresql":
        params = {"ids": decision_ids, "organization_id": organization_id}
        return set((await session.scalars(_STORED_IDS, params)).all())
    column = DecisionLog.decision_id
    return set(await session.scalars(select(column).where(column.in_(decision_ids))))


async def _insert_decisions(
    session: AsyncSession, rows: Sequence[dict[str, Any]], encoded: Sequence[_Encoded]
) -> None:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # COPY: one round trip and no per-row statement work; routed to the partitions.
        pairs = zip(rows, encoded, strict=True)
        records = [_COPY_ORDER({**row, **done.texts}) for row, done in pairs]
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            PARENT, records=records, columns=_COLUMNS
        )
    else:
        values = [{**row, **done.texts} for row, done in zip(rows, encoded, strict=True)]
        await session.execute(insert(_DECISIONS_AS_TEXT), values)


async def store_decisions(
    session: AsyncSession, organization_id: uuid.UUID, rows: Sequence[dict[str, Any]], field: str
) -> tuple[int, int]:
    """Chain and insert the rows whose decision id is new to the organisation.

    Everything but the sequence is encoded before the organisation's chain row is locked;
    the lock serialises its ingests, so the duplicate check and the chain are race-free."""
    if not rows:
        return 0, 0
    if any(row["organization_id"] != organization_id for row in rows):
        raise ValueError("every row must belong to the ingesting organisation")
    encoded = _encode_rows(rows, field)
    # Duplicates inside one batch count once; the first occurrence is the one kept.
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        first.setdefault(row["decision_id"], index)
    chain = await lock_chain(session, organization_id)
    known = await _stored_ids(session, organization_id, list(first))
    new = [index for key, index in first.items() if key not in known]
    if new:
        new_rows = [rows[index] for index in new]
        new_encoded = [encoded[index] for index in new]
        append(chain, new_rows, [done.canonical for done in new_encoded])
        await _insert_decisions(session, new_rows, new_encoded)
        await session.flush()
        await ingest_hooks.after_decisions_stored(session, new_rows)
    return len(new), len(rows) - len(new)


def sidecar_rows(
    identity: GatewayIdentity, records: Sequence[IngestRecord]
) -> list[dict[str, Any]]:
    """The stored form of a sidecar's batch, ingested at one moment."""
    now = utcnow()
    return [
        decision_row(
            identity.organization_id,
            identity.gateway_id,
            decision_id=r.decision_id,
            time=r.time,
            decision_input=r.input,
            result=r.result,
            duration_us=r.duration_us,
            instance=r.instance,
            source="sidecar",
            created_at=now,
        )
        for r in records
    ]


async def decisions(
    session: AsyncSession, identity: GatewayIdentity, records: Sequence[IngestRecord]
) -> tuple[int, int]:
    rows = sidecar_rows(identity, records)
    outcomes = (r.result.get("outcome") for r in records)
    observability.decisions_received(str(identity.organization_id), outcomes)
    return await store_decisions(session, identity.organization_id, rows, "decisions")


def _execution_row(identity: GatewayIdentity, record: ExecutionRecord) -> dict[str, Any]:
    values = record.model_dump(exclude={"id"})
    return {
        **values,
        "id": uuid.uuid4(),
        "organization_id": identity.organization_id,
        "created_at": record.time,
        "execution_id": record.id,
        "gateway_id": identity.gateway_id,
    }


async def _insert_new(
    session: AsyncSession, model: type[Base], key: str, rows: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    if not rows:
        return 0, 0
    # Duplicates inside one batch count once.
    unique = list({row[key]: row for row in rows}.values())
    dialect = session.get_bind().dialect.name
    table: Table = model.__table__  # type: ignore[assignment]
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:
        raise RuntimeError(f"ingest supports PostgreSQL and SQLite, not {dialect}")
    statement = statement.on_conflict_do_nothing(index_elements=["organization_id", key])
    result = await session.execute(statement.returning(table.c[key]), unique)
    accepted = len(result.all())
    return accepted, len(rows) - accepted


async def executions(
    session: AsyncSession, identity: GatewayIdentity, records: Sequence[ExecutionRecord]
) -> tuple[int, int]:
    rows = [_execution_row(identity, r) for r in records]
    observability.executions_reported(str(identity.organization_id), records)
    return await _insert_new(session, Execution, "execution_id", rows)


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """`body` as sent, or decompressed when gzip (`Content-Encoding: gzip`, or recognised by
    its magic bytes), refused with 413 when that is larger than `limit` bytes: decompression
    stops at `limit + 1`, so a small body that inflates to gigabytes costs nothing."""
    if (content_encoding or "").strip().lower() != "gzip" and body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Invalid(
            "body: not valid gzip", details=[{"field": "body", "message": "not valid gzip"}]
        ) from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is larger than {limit} bytes")
    if not inflater.eof:
        raise Invalid(
            "body: truncated gzip", details=[{"field": "body", "message": "truncated gzip"}]
        )
    return plain


def parse_batch(raw: bytes) -> IngestBatch:
    """A sidecar's batch of decisions (`POST …/decisions/ingest`, JSON already inflated):
    only the envelope is validated, `input` and `result` stay as sent. Not JSON is a 422
    naming `body`; a bad envelope a 422 naming each field (`decisions.3.time`)."""
    try:
        document = pydantic_core.from_json(raw)  # the fastest parser at hand, to Python
    except ValueError:
        try:  # the standard parser also takes lone surrogates, which ingest then names
            document = json.loads(raw)
        except ValueError:
            raise Invalid(
                "body: not JSON", details=[{"field": "body", "message": "not JSON"}]
            ) from None
    try:
        return IngestBatch.model_validate(document)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        raise invalid_fields([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


async def into_partitions(
    db: Database, times: list[datetime], store: Callable[[], Awaitable[tuple[int, int]]]
) -> tuple[int, int]:
    """Run `store` (a transaction storing decisions of `times`; it answers accepted and
    duplicates) once the monthly partitions of `times` exist; again if one was dropped
    meanwhile by another process (this one remembers which partitions it saw for a minute)."""
    await ensure_partitions(db.engine, times)
    try:
        return await store()
    except Exception as error:
        if not missing_partition(error):
            raise
    forget_partitions(partition_name(month) for month in months_needed(times))
    await ensure_partitions(db.engine, times)
    return await store()
