"""Metering (M12): executions, tokens and cost per organisation, day, workspace, agent and
API key over a period, from the execution records the gateways ship and, for the
workspace, the decision that admitted each execution.

Everything is the caller's organisation's (the session's row filter); without `group_by`
the one row is the organisation's total. Days are UTC calendar days."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import DecisionLog, Execution
from control_plane.services.decisions import time_bucket

GROUPS: tuple[str, ...] = ("day", "workspace", "agent", "api_key")
METRICS: tuple[str, ...] = ("executions", "tokens_in", "tokens_out", "tokens", "cost_usd")
# A decision is logged just before its execution starts; the join looks this far around
# the period so the partitions it reads stay few.
_DECISION_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class UsageTotals:
    since: datetime
    until: datetime
    group_by: tuple[str, ...]
    rows: list[dict[str, Any]]
    total: dict[str, Any]


def _group_columns(group_by: Sequence[str]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name in group_by:
        if name == "day":
            columns["day"] = func.substr(time_bucket("day", Execution.time), 1, 10)
        elif name == "workspace":
            columns["workspace"] = DecisionLog.workspace
        elif name == "agent":
            columns["kind"] = Execution.kind
            columns["agent"] = Execution.name
        elif name == "api_key":
            # Calls made with an API key carry `apikey:<name>`; a user's calls group as null.
            columns["api_key"] = case(
                (Execution.principal.like("apikey:%"), func.substr(Execution.principal, 8)),
                else_=None,
            )
    return columns


def _metrics() -> list[Any]:
    return [
        func.count(Execution.id).label("executions"),
        func.coalesce(func.sum(Execution.tokens_in), 0).label("tokens_in"),
        func.coalesce(func.sum(Execution.tokens_out), 0).label("tokens_out"),
        func.coalesce(func.sum(Execution.cost_usd), 0.0).label("cost_usd"),
    ]


def _row(values: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out = int(values["tokens_in"]), int(values["tokens_out"])
    return {
        **{k: v for k, v in values.items() if k not in METRICS},
        "executions": int(values["executions"]),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens": tokens_in + tokens_out,
        "cost_usd": round(float(values["cost_usd"]), 6),
    }


async def totals(
    session: AsyncSession, *, since: datetime, until: datetime, group_by: Sequence[str]
) -> UsageTotals:
    """Totals of executions that started in `[since, until)`, by the `group_by` keys."""
    groups = _group_columns(group_by)
    period = and_(Execution.time >= since, Execution.time < until)
    query = select(*(c.label(k) for k, c in groups.items()), *_metrics()).where(period)
    if "workspace" in group_by:
        query = query.outerjoin(
            DecisionLog,
            and_(
                DecisionLog.decision_id == Execution.decision_id,
                DecisionLog.time >= since - _DECISION_SLACK,
                DecisionLog.time < until + _DECISION_SLACK,
            ),
        )
    if groups:
        keys = list(groups.values())
        query = query.group_by(*keys).order_by(*(k.asc().nulls_first() for k in keys))
    rows = [_row(dict(r._mapping)) for r in await session.execute(query)]
    if not groups:
        total = rows[0]
        rows = [total]
    else:
        total = {
            m: (round(sum(r[m] for r in rows), 6) if m == "cost_usd" else sum(r[m] for r in rows))
            for m in METRICS
        }
    return UsageTotals(since, until, tuple(group_by), rows, total)


def columns(group_by: Sequence[str]) -> list[str]:
    keys = [k for k in _group_columns(group_by)]
    return [*keys, *METRICS]


def to_csv(result: UsageTotals) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = columns(result.group_by)
    writer.writerow(names)
    for row in result.rows:
        writer.writerow(["" if row.get(n) is None else row[n] for n in names])
    return buffer.getvalue()
