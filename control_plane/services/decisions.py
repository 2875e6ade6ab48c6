"""Auditors' views of the decision log: search, detail, streaming export, aggregates.

Order is newest first, `(time desc, decision_id desc)`, with keyset cursors: a page never
repeats or skips a decision that was stored when the walk began, whatever is ingested
meanwhile. Export walks the same keyset a batch per short transaction (SQLite's writer is
never held across a download, and memory stays one batch).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from control_plane.db.base import utcnow
from control_plane.db.models import BundleRevision, DecisionLog
from control_plane.errors import Invalid
from control_plane.schemas.decisions import AggregateQuery, DecisionQuery

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]
EXPORT_BATCH = 500
MAX_BUCKETS = 2000
NONE_KEY = "(none)"


# --- filters and cursors -----------------------------------------------------------------


def glob_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def conditions(query: DecisionQuery) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if query.since is not None:
        found.append(DecisionLog.time >= query.since)
    if query.until is not None:
        found.append(DecisionLog.time < query.until)
    for column, value in (
        (DecisionLog.principal, query.principal),
        (DecisionLog.action, query.action),
        (DecisionLog.outcome, query.outcome),
        (DecisionLog.channel, query.channel),
        (DecisionLog.gateway_id, query.gateway),
        (DecisionLog.workspace, query.workspace),
        (DecisionLog.bundle_revision, query.bundle_revision),
        (DecisionLog.decision_id, query.decision_id),
    ):
        if value is not None:
            found.append(column == value)
    if query.resource is not None:
        if "*" in query.resource:
            found.append(DecisionLog.resource.like(glob_to_like(query.resource), escape="\\"))
        else:
            found.append(DecisionLog.resource == query.resource)
    if query.reason is not None:
        found.append(
            func.lower(DecisionLog.reasons).contains(query.reason.lower(), autoescape=True)
        )
    return found


def encode_cursor(time: datetime, decision_id: str) -> str:
    raw = json.dumps([time.astimezone(UTC).isoformat(), decision_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        time, decision_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        moment = datetime.fromisoformat(time)
        if moment.tzinfo is None or not isinstance(decision_id, str):
            raise ValueError(cursor)
        return moment.astimezone(UTC), decision_id
    except (ValueError, TypeError, OverflowError):
        raise Invalid(
            "cursor: malformed", details=[{"field": "cursor", "message": "malformed"}]
        ) from None


def _after(time: datetime, decision_id: str) -> ColumnElement[bool]:
    return or_(
        DecisionLog.time < time,
        and_(DecisionLog.time == time, DecisionLog.decision_id < decision_id),
    )


def _page_query(
    query: DecisionQuery, after: tuple[datetime, str] | None, limit: int
) -> Select[DecisionLog]:
    statement = select(DecisionLog).where(*conditions(query))
    if after is not None:
        statement = statement.where(_after(*after))
    return statement.order_by(DecisionLog.time.desc(), DecisionLog.decision_id.desc()).limit(limit)


async def search(
    session: AsyncSession, query: DecisionQuery, cursor: str | None, limit: int
) -> tuple[Sequence[DecisionLog], str | None]:
    after = decode_cursor(cursor) if cursor else None
    rows = (await session.scalars(_page_query(query, after, limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.time, last.decision_id)


# --- one decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class DecidingBundle:
    revision: int
    policies: dict[str, int]
    key_id: str
    reason: str
    created_at: datetime


async def detail(
    session: AsyncSession, decision_id: str
) -> tuple[DecisionLog, DecidingBundle | None] | None:
    row = await session.scalar(
        select(DecisionLog)
        .where(DecisionLog.decision_id == decision_id)
        .order_by(DecisionLog.time)
        .limit(1)
    )
    if row is None:
        return None
    revision = row.bundle_revision
    if revision is None or not revision.isdigit() or len(revision) > 18:
        return row, None
    found = (
        await session.execute(
            select(
                BundleRevision.revision,
                BundleRevision.policies,
                BundleRevision.key_id,
                BundleRevision.reason,
                BundleRevision.created_at,
            ).where(BundleRevision.revision == int(revision))
        )
    ).first()
    return row, DecidingBundle(*found) if found else None


# --- export ---------------------------------------------------------------------------

CSV_COLUMNS = (
    "decision_id",
    "time",
    "sequence",
    "source",
    "principal",
    "action",
    "resource",
    "workspace",
    "channel",
    "outcome",
    "reasons",
    "bundle_revision",
    "gateway_id",
    "instance",
    "duration_us",
    "input",
    "result",
)


def record(row: DecisionLog) -> dict[str, Any]:
    return {
        "decision_id": row.decision_id,
        "time": row.time.astimezone(UTC).isoformat(),
        "sequence": row.sequence,
        "source": row.source,
        "gateway_id": str(row.gateway_id) if row.gateway_id else None,
        "instance": row.instance,
        "principal": row.principal,
        "action": row.action,
        "resource": row.resource,
        "workspace": row.workspace,
        "channel": row.channel,
        "outcome": row.outcome,
        "bundle_revision": row.bundle_revision,
        "duration_us": row.duration_us,
        "input": row.input,
        "result": row.result,
    }


async def _batches(
    open_session: SessionFactory, query: DecisionQuery
) -> AsyncIterator[Sequence[DecisionLog]]:
    after: tuple[datetime, str] | None = None
    while True:
        async with open_session() as session:
            rows = (await session.scalars(_page_query(query, after, EXPORT_BATCH))).all()
        if rows:
            yield rows
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1].time, rows[-1].decision_id)


async def export_ndjson(open_session: SessionFactory, query: DecisionQuery) -> AsyncIterator[bytes]:
    async for rows in _batches(open_session, query):
        lines = (json.dumps(record(r), ensure_ascii=False, separators=(",", ":")) for r in rows)
        yield ("\n".join(lines) + "\n").encode()


async def export_csv(open_session: SessionFactory, query: DecisionQuery) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    async for rows in _batches(open_session, query):
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            values = record(row)
            values["reasons"] = "; ".join(str(r) for r in row.result.get("reasons") or [])
            values["input"] = json.dumps(row.input, ensure_ascii=False, separators=(",", ":"))
            values["result"] = json.dumps(row.result, ensure_ascii=False, separators=(",", ":"))
            writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
        yield buffer.getvalue().encode()


# --- aggregates -----------------------------------------------------------------------


class _Bucket(FunctionElement[str]):
    """The UTC hour or day of a timestamp as `YYYY-MM-DDTHH:00:00`, on either backend.

    The unit is the class, not a bound value, so it is part of SQLAlchemy's statement
    cache key (a bound value is not, and would reuse an hour query's SQL for a day)."""

    type = String()
    inherit_cache = True
    unit = ""


class _HourBucket(_Bucket):
    name, unit, inherit_cache = "hour_bucket", "hour", True


class _DayBucket(_Bucket):
    name, unit, inherit_cache = "day_bucket", "day", True


def time_bucket(interval: str, column: Any) -> _Bucket:
    return _HourBucket(column) if interval == "hour" else _DayBucket(column)


@compiles(_Bucket, "postgresql")
def _bucket_postgresql(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    form = (
        '\'YYYY-MM-DD"T"HH24":00:00"\'' if element.unit == "hour" else "'YYYY-MM-DD\"T00:00:00\"'"
    )
    return f"to_char({compiler.process(column, **kw)} AT TIME ZONE 'UTC', {form})"


@compiles(_Bucket, "sqlite")
def _bucket_sqlite(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    form = "'%Y-%m-%dT%H:00:00'" if element.unit == "hour" else "'%Y-%m-%dT00:00:00'"
    return f"strftime({form}, {compiler.process(column, **kw)})"


@dataclass(frozen=True)
class AggregateResult:
    by: str
    interval: str
    since: datetime
    until: datetime
    keys: list[str]
    buckets: list[dict[str, Any]]


def _floor(moment: datetime, interval: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if interval == "day" else moment


def window(query: AggregateQuery) -> tuple[datetime, datetime, timedelta]:
    step = timedelta(hours=1) if query.interval == "hour" else timedelta(days=1)
    until = query.until or utcnow()
    since = query.since or until - step * (24 if query.interval == "hour" else 30)
    if (until - since) / step > MAX_BUCKETS:
        message = f"the window holds more than {MAX_BUCKETS} {query.interval}s"
        raise Invalid(f"since: {message}", details=[{"field": "since", "message": message}])
    return since, until, step


async def aggregates(session: AsyncSession, query: AggregateQuery) -> AggregateResult:
    since, until, step = window(query)
    scoped = query.model_copy(update={"since": since, "until": until})
    where = conditions(scoped)
    key = func.coalesce(getattr(DecisionLog, query.by), literal_column(f"'{NONE_KEY}'"))
    count = func.count()
    top = (
        await session.execute(
            select(key, count)
            .where(*where)
            .group_by(key)
            .order_by(count.desc(), key)
            .limit(query.top)
        )
    ).all()
    keys = [str(k) for k, _ in top]
    bucket = time_bucket(query.interval, DecisionLog.time)
    counts: dict[str, dict[str, int]] = {}
    if keys:
        for start, name, n in await session.execute(
            select(bucket, key, count).where(*where, key.in_(keys)).group_by(bucket, key)
        ):
            counts.setdefault(start, {})[name] = n
    totals = dict(
        (await session.execute(select(bucket, count).where(*where).group_by(bucket))).all()
    )
    buckets = []
    moment = _floor(since, query.interval)
    while moment < until:
        label = moment.strftime("%Y-%m-%dT%H:%M:%S")
        buckets.append(
            {"start": moment, "counts": counts.get(label, {}), "total": totals.get(label, 0)}
        )
        moment += step
    return AggregateResult(query.by, query.interval, since, until, keys, buckets)
