"""The executions-per-month warning at 90 % of the plan's limit: a webhook event and an email
to the organisation's owners, once per organisation and calendar month.

It is raised by the control plane, never by the engine: the sidecars enforce the plan's
budget with no soft limit (a soft limit would hold calls for approval, `bundle.py`), and
report their shared counter in every status report (`services/usage.py`). When a report
shows the plan's budget (`<plan>-plan-executions`, org scope, this month's window) at or
past 90 % of the plan's limit as the control plane knows it, a `plan_warnings` row is
inserted for `(organisation, window)`: the unique key makes exactly one report the first,
also with several replicas and sidecars reporting at once. That insert queues the
`plan.quota_warning` webhook event in the same transaction; the row is also the email's
outbox, which the notification worker drains (`send_emails`, SMTP; off while
`KAIZEN_SMTP_HOST` is unset), retrying with back-off like approval emails.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Membership, PlanWarning, User
from control_plane.db.session import SYSTEM, Database
from control_plane.services import webhooks
from control_plane.services.plans.bundle import budget_name
from control_plane.services.plans.quotas import plan_of

if TYPE_CHECKING:
    from control_plane.services.notifier import Mailer

log = logging.getLogger(__name__)

EVENT = "plan.quota_warning"
# The share of the monthly limit at which the warning goes out.
THRESHOLD = 0.9
EMAIL_ATTEMPTS = 5
# A claimed email is not picked by another worker this long (far above the SMTP timeout).
EMAIL_LEASE = timedelta(minutes=5)


def month_window(now: datetime) -> str:
    """The engine's window name for `now`'s calendar month (policy/engine/budgets.py)."""
    return f"month:{now:%Y-%m}"


def reached(used: float, limit: int) -> bool:
    return limit > 0 and used >= THRESHOLD * limit


def _plan_budget_used(budgets: Sequence[Mapping[str, Any]], name: str, window: str) -> float | None:
    used: float | None = None
    for budget in budgets:
        if (
            budget.get("name") == name
            and budget.get("scope") == "org"
            and budget.get("metric") == "executions"
            and budget.get("period") == "month"
            and budget.get("window") == window
        ):
            value = budget.get("used")
            if isinstance(value, int | float) and not isinstance(value, bool):
                used = max(used or 0.0, float(value))
    return used


async def check_report(
    session: AsyncSession, organization_id: uuid.UUID, budgets: Sequence[Mapping[str, Any]]
) -> PlanWarning | None:
    """After a status report: warn when it shows this month's plan budget at 90 %.

    The limit is the plan's as the control plane knows it, not the number in the report."""
    if not budgets:
        return None
    state = await plan_of(session)
    limit = state.limits["executions_per_month"]
    if limit is None:
        return None
    window = month_window(utcnow())
    used = _plan_budget_used(budgets, budget_name(state.plan.name), window)
    if used is None or not reached(used, limit):
        return None
    return await warn(session, organization_id, window, state.plan.name, int(used), limit)


async def warn(
    session: AsyncSession,
    organization_id: uuid.UUID,
    window: str,
    plan: str,
    used: int,
    limit: int,
) -> PlanWarning | None:
    """Record the month's warning and queue its webhook event; None when it already went out."""
    table: Table = PlanWarning.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    now = utcnow()
    statement = (
        insert.values(
            id=uuid.uuid4(),
            organization_id=organization_id,
            created_at=now,
            window=window,
            plan=plan,
            used=used,
            limit=limit,
            email_attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "window"])
        .returning(table.c.id)
    )
    inserted = (await session.execute(statement)).scalar_one_or_none()
    if inserted is None:
        return None
    await webhooks.emit(
        session,
        organization_id,
        EVENT,
        {
            "limit": "executions_per_month",
            "plan": plan,
            "window": window,
            "used": used,
            "allowed": limit,
            "percent": round(100 * used / limit, 1),
        },
    )
    return await session.get(PlanWarning, inserted)


async def current(session: AsyncSession, now: datetime | None = None) -> PlanWarning | None:
    """The session's organisation's warning of this month, if one went out."""
    window = month_window(now or utcnow())
    return await session.scalar(select(PlanWarning).where(PlanWarning.window == window))


# -- email ------------------------------------------------------------------------------------


async def owner_emails(session: AsyncSession, organization_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.organization_id == organization_id,
            Membership.role == "owner",
            User.is_active.is_(True),
        )
    )
    return sorted(rows)


def warning_email(warning: PlanWarning, base_url: str) -> tuple[str, str]:
    percent = round(100 * warning.used / warning.limit) if warning.limit else 100
    subject = f"Kaizen Studio: {percent}% of this month's executions used"
    body = (
        f"Your organisation has used {warning.used:,} of the {warning.limit:,} executions its "
        f"{warning.plan} plan allows this month ({warning.window.removeprefix('month:')}).\n\n"
        "Past the limit, every agent call is denied until the month ends or the plan is "
        "upgraded.\n\n"
        f"Plan and usage: {base_url.rstrip('/')}/billing\n"
    )
    return subject, body


async def send_emails(db: Database, mailer: Mailer, base_url: str, retry_base: float) -> int:
    """Email the owners of each organisation with an unsent warning; the count emailed."""
    now = utcnow()
    async with db.session(SYSTEM) as session:
        due = (
            await session.scalars(
                select(PlanWarning)
                .where(
                    PlanWarning.emailed_at.is_(None),
                    PlanWarning.email_attempts < EMAIL_ATTEMPTS,
                    or_(
                        PlanWarning.email_next_attempt_at.is_(None),
                        PlanWarning.email_next_attempt_at <= now,
                    ),
                )
                .order_by(PlanWarning.created_at)
                .limit(50)
                .with_for_update(skip_locked=True)
            )
        ).all()
        batch = []
        for warning in due:
            warning.email_attempts += 1
            warning.email_next_attempt_at = now + EMAIL_LEASE
            subject, body = warning_email(warning, base_url)
            batch.append(
                (warning.id, subject, body, await owner_emails(session, warning.organization_id))
            )
    sent = 0
    for warning_id, subject, body, recipients in batch:
        error: str | None = None
        if recipients:
            try:
                await mailer.send(recipients, subject, body)
            except (OSError, smtplib.SMTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
        async with db.session(SYSTEM) as session:
            row = await session.get(PlanWarning, warning_id)
            if row is None:
                continue
            if error is None:
                row.emailed_at = utcnow()
                sent += 1 if recipients else 0
            else:
                log.warning("plan warning email %s failed: %s", warning_id, error)
                backoff = retry_base * 2 ** (row.email_attempts - 1)
                row.email_next_attempt_at = utcnow() + timedelta(seconds=backoff)
    return sent
