"""Notifications: what ingested decisions and status reports raise (webhook events, held in
the outbox until `services/notifier.py`'s worker sends them).

After each ingest batch (`ingest_hooks`), in the same transaction:
- `require_approval` decisions open approval requests (`approval.requested`);
- a decision whose output carries budget state over its soft or hard limit raises
  `budget.soft_limit` / `budget.hard_limit`, once per budget and period window;
- `denial_alert_threshold` denies of one principal within a fixed window of
  `denial_alert_window_seconds` raise `security.repeated_denials`, once per window.
A gateway status report whose `bundle_verification_failures` grew raises
`security.bundle_verification_failed`.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import NotificationCounter
from control_plane.db.session import Database
from control_plane.services import approvals, ingest_hooks, webhooks
from control_plane.services.audit import Actor
from control_plane.settings import Settings

if TYPE_CHECKING:
    from control_plane.services.gateways import GatewayIdentity


@dataclass(frozen=True)
class Rules:
    approval_ttl: timedelta = timedelta(seconds=3600)
    denial_threshold: int = 10
    denial_window: int = 300

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            timedelta(seconds=settings.approval_ttl_seconds),
            settings.denial_alert_threshold,
            settings.denial_alert_window_seconds,
        )


# Per database engine, so two apps in one process (tests) each keep their own settings.
_rules: weakref.WeakKeyDictionary[Engine, Rules] = weakref.WeakKeyDictionary()


def configure_notifications(db: Database, settings: Settings) -> None:
    _rules[db.engine.sync_engine] = Rules.of(settings)


def _rules_for(session: AsyncSession) -> Rules:
    bind = session.get_bind()
    engine = bind.engine if hasattr(bind, "engine") else bind
    return _rules.get(engine, Rules())  # type: ignore[arg-type]


# -- counters: once per window ----------------------------------------------------------------


async def _crossed(
    session: AsyncSession,
    organization_id: uuid.UUID,
    key: str,
    amount: int,
    threshold: int,
    expires_at: datetime,
) -> int | None:
    """Add `amount`; the count if this call is the first to reach `threshold`, else None."""
    table: Table = NotificationCounter.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(table).values(
        id=uuid.uuid4(),
        organization_id=organization_id,
        created_at=now,
        key=key[:400],
        count=amount,
        expires_at=expires_at,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "key"],
        set_={"count": table.c.count + statement.excluded.count},
    )
    count = int((await session.execute(statement.returning(table.c.count))).scalar_one())
    if count < threshold:
        return None
    fired = await session.execute(
        update(NotificationCounter)
        .where(
            NotificationCounter.organization_id == organization_id,
            NotificationCounter.key == key[:400],
            NotificationCounter.fired_at.is_(None),
        )
        .values(fired_at=now)
        .returning(NotificationCounter.id)
        .execution_options(synchronize_session=False)
    )
    return count if fired.first() is not None else None


# -- after ingest -----------------------------------------------------------------------------


_COLUMNS = ("decision_id", "time", "organization_id", "gateway_id", "outcome", "input", "result")


def _mapping(row: Any) -> Mapping[str, Any]:
    if isinstance(row, Mapping):
        return row
    return {name: getattr(row, name, None) for name in _COLUMNS}


def _aware(moment: Any) -> datetime:
    if not isinstance(moment, datetime):
        return utcnow()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


async def _budget_events(
    session: AsyncSession, organization_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]
) -> None:
    for row in rows:
        budget = (row.get("result") or {}).get("budget")
        if not isinstance(budget, Mapping):
            continue
        used, limit = _number(budget.get("used")), _number(budget.get("limit"))
        soft = _number(budget.get("soft_limit"))
        if used is None or limit is None:
            continue
        kind = (
            "hard_limit"
            if used > limit
            else "soft_limit"
            if soft is not None and used > soft
            else None
        )
        if kind is None:
            continue
        parts = [str(budget.get(k)) for k in ("name", "scope", "metric", "window")]
        key = f"budget.{kind}:" + ":".join(parts)
        expires = utcnow() + timedelta(days=40)  # past the longest period (a month)
        if await _crossed(session, organization_id, key, 1, 1, expires) is None:
            continue
        principal = ((row.get("input") or {}).get("principal") or {}).get("id")
        await webhooks.emit(
            session,
            organization_id,
            f"budget.{kind}",
            {
                "budget": dict(budget),
                "decision_id": row.get("decision_id"),
                "outcome": row.get("outcome"),
                "principal": principal,
            },
        )


async def _denial_events(
    session: AsyncSession,
    organization_id: uuid.UUID,
    rows: Sequence[Mapping[str, Any]],
    rules: Rules,
) -> None:
    windows: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        principal = ((row.get("input") or {}).get("principal") or {}).get("id")
        if row.get("outcome") != "deny" or not isinstance(principal, str):
            continue
        start = int(_aware(row.get("time")).timestamp()) // rules.denial_window
        windows.setdefault((principal, start * rules.denial_window), []).append(row)
    for (principal, start), denied in sorted(windows.items()):
        begins = datetime.fromtimestamp(start, UTC)
        ends = begins + timedelta(seconds=rules.denial_window)
        key = f"security.repeated_denials:{principal}:{start}"
        count = await _crossed(
            session,
            organization_id,
            key,
            len(denied),
            rules.denial_threshold,
            ends + timedelta(days=1),
        )
        if count is None:
            continue
        last = denied[-1]
        await webhooks.emit(
            session,
            organization_id,
            "security.repeated_denials",
            {
                "principal": principal,
                "denials": count,
                "threshold": rules.denial_threshold,
                "window_start": begins,
                "window_end": ends,
                "last_decision_id": last.get("decision_id"),
                "last_reasons": list((last.get("result") or {}).get("reasons") or [])[:5],
            },
        )


async def after_decisions_stored(session: AsyncSession, stored: Sequence[Any]) -> None:
    """The ingest hook: approval requests, budget and repeated-denial events."""
    rules = _rules_for(session)
    by_org: dict[uuid.UUID, list[Mapping[str, Any]]] = {}
    for row in map(_mapping, stored):
        if isinstance(row.get("organization_id"), uuid.UUID):
            by_org.setdefault(row["organization_id"], []).append(row)
    for organization_id, rows in by_org.items():
        held = [r for r in rows if r.get("outcome") == "require_approval"]
        if held:
            gateway = held[0].get("gateway_id")
            actor = Actor("gateway", str(gateway) if gateway else None, "decision ingest")
            await approvals.open_requests(
                session, organization_id, actor, held, ttl=rules.approval_ttl
            )
        await _budget_events(session, organization_id, rows)
        await _denial_events(session, organization_id, rows, rules)


ingest_hooks.register(after_decisions_stored)


async def bundle_verification_report(
    session: AsyncSession, identity: GatewayIdentity, report: Mapping[str, Any]
) -> None:
    """Raise `security.bundle_verification_failed` when an instance's failure count grew."""
    failures = report.get("bundle_verification_failures")
    if not isinstance(failures, int) or failures <= 0:
        return
    instance = str(report.get("instance"))[:200]
    key = f"security.bundle_verification:{identity.gateway_id}:{instance}"
    counter = await session.scalar(
        select(NotificationCounter).where(NotificationCounter.key == key).with_for_update()
    )
    now = utcnow()
    if counter is None:
        counter = NotificationCounter(key=key, count=0, expires_at=now)
        session.add(counter)
    # A smaller count is a restarted process: its failures are new.
    new = failures - counter.count if failures >= counter.count else failures
    counter.count, counter.expires_at = failures, now + timedelta(days=7)
    if new <= 0:
        return
    counter.fired_at = now
    await webhooks.emit(
        session,
        identity.organization_id,
        "security.bundle_verification_failed",
        {
            "gateway_id": identity.gateway_id,
            "gateway": identity.name,
            "instance": instance,
            "failures": failures,
            "new_failures": new,
            "last_error": str(report.get("last_verification_error") or "")[:1000] or None,
            "bundle_revision": report.get("bundle_revision"),
        },
    )
