"""Notifications: what ingested decisions and status reports raise, and the worker that
sends webhooks and email.

After each ingest batch (`ingest_hooks`), in the same transaction:
- `require_approval` decisions open approval requests (`approval.requested`);
- a decision whose output carries budget state over its soft or hard limit raises
  `budget.soft_limit` / `budget.hard_limit`, once per budget and period window;
- `denial_alert_threshold` denies of one principal within a fixed window of
  `denial_alert_window_seconds` raise `security.repeated_denials`, once per window.
A gateway status report whose `bundle_verification_failures` grew raises
`security.bundle_verification_failed`.

`Notifier` runs in the app's lifespan: it expires overdue approval requests, drains the
webhook outbox and emails approvers about new requests (SMTP, off while
`KAIZEN_SMTP_HOST` is unset). Every step is safe with several replicas.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Engine, Table, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import ApprovalRequest, Membership, NotificationCounter, User
from control_plane.db.session import SYSTEM, Database
from control_plane.services import approvals, ingest_hooks, webhooks
from control_plane.services.audit import Actor
from control_plane.services.plans import warnings as plan_warnings
from control_plane.services.secrets import SecretStore
from control_plane.settings import Settings
from policy.net.outbound_http import guarded_client

if TYPE_CHECKING:
    from control_plane.services.gateways import GatewayIdentity

log = logging.getLogger(__name__)

EMAIL_ATTEMPTS = 5
SWEEP_EVERY = timedelta(seconds=10)


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


# -- email ------------------------------------------------------------------------------------


class Mailer:
    """SMTP through the standard library, off the event loop."""

    def __init__(self, host: str, port: int, sender: str, *, timeout: float = 10.0) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    async def send(self, recipients: Sequence[str], subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = (
            self.sender,
            ", ".join(recipients),
            subject,
        )
        message.set_content(body)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)


async def approver_emails(session: AsyncSession, request: ApprovalRequest) -> list[str]:
    """Active members who may decide `request`, its requester excepted."""
    rows = await session.execute(
        select(User.id, User.email, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == request.organization_id, User.is_active.is_(True))
    )
    return sorted(
        email
        for user_id, email, role in rows
        if approvals.role_may_decide(role, request.approver_roles)
        and f"user:{email}" != request.principal
        and user_id != request.requester_user_id  # also when they called by API key
    )


def approval_email(request: Mapping[str, Any], base_url: str) -> tuple[str, str]:
    subject = (
        f"Approval needed: {request['principal']} wants to "
        f"{request['action']} {request['resource']}"
    )
    lines = [
        f"{request['principal']} asked to {request['action']} {request['resource']}.",
        "",
        "Why it was held:",
        *[f"  - {reason}" for reason in request["reasons"]],
        "",
        f"Approve or deny before {request['expires_at']:%Y-%m-%d %H:%M:%S} UTC:",
        f"  POST {base_url.rstrip('/')}/api/v1/approvals/{request['id']}/approve",
        f"  POST {base_url.rstrip('/')}/api/v1/approvals/{request['id']}/deny",
    ]
    return subject, "\n".join(lines) + "\n"


# -- the worker -------------------------------------------------------------------------------


class Notifier:
    """Background: expire approvals, deliver webhooks, email approvers."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        secret_store: Callable[[], SecretStore],
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.secret_store = secret_store
        self.base_url = settings.control_plane_url
        self.poll = settings.notification_poll_seconds
        self.max_attempts = settings.webhook_max_attempts
        self.retry_base = settings.webhook_retry_base_seconds
        self.timeout = settings.webhook_timeout_seconds
        self.legacy_signature = settings.webhook_legacy_signature
        host = settings.smtp_host
        self.mailer = Mailer(host, settings.smtp_port, settings.smtp_from) if host else None
        # Webhook URLs are the tenant's word: every connection goes through the outbound
        # guard (no internal addresses, the checked address dialled, no redirects).
        self._http = http or guarded_client(settings.outbound_guard)
        self._task: asyncio.Task[None] | None = None
        # One round at a time in this process: a round run on demand (an operator's command, a
        # test) waits for the background one rather than finding its deliveries leased and
        # returning before they were sent.
        self._round = asyncio.Lock()
        self._last_sweep = datetime.min.replace(tzinfo=UTC)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kaizen-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # keep running: the next round retries whatever failed
                log.exception("notification round failed")
            await asyncio.sleep(self.poll)

    async def run_once(self, *, sweep: bool = False) -> dict[str, int]:
        async with self._round:
            return await self._round_once(sweep=sweep)

    async def _round_once(self, *, sweep: bool) -> dict[str, int]:
        now = utcnow()
        expired = 0
        if sweep or now - self._last_sweep >= SWEEP_EVERY:
            expired = await self.sweep(now)
            self._last_sweep = now
        return {
            "expired": expired,
            **await self.deliver_webhooks(),
            "emailed": await self.email(),
            "plan_warnings_emailed": await self.email_plan_warnings(),
        }

    async def sweep(self, now: datetime) -> int:
        async with self.db.session(SYSTEM) as session:
            expired = await approvals.expire_due(session, now)
            await session.execute(
                delete(NotificationCounter)
                .where(NotificationCounter.expires_at < now)
                .execution_options(synchronize_session=False)
            )
        return expired

    async def deliver_webhooks(self) -> dict[str, int]:
        outcomes = {"delivered": 0, "retrying": 0, "failed": 0}
        claimed = await webhooks.claim_due(self.db, utcnow())
        for item in claimed:
            code: int | None
            error: str | None
            try:
                secret = await self.secret_store().get(
                    item.organization_id, webhooks.secret_name(item.webhook_id)
                )
            except Exception as exc:  # a missing or unreadable secret is this delivery's error
                code, error = None, f"signing secret unavailable: {type(exc).__name__}"
            else:
                code, error = await webhooks.send(
                    self._http, item, secret, self.timeout, legacy=self.legacy_signature
                )
            status = await webhooks.record(
                self.db,
                item,
                code,
                error,
                max_attempts=self.max_attempts,
                retry_base=self.retry_base,
            )
            key = "retrying" if status == "pending" else status
            outcomes[key] = outcomes.get(key, 0) + 1
        return outcomes

    async def email_plan_warnings(self) -> int:
        if self.mailer is None:
            return 0
        return await plan_warnings.send_emails(self.db, self.mailer, self.base_url, self.retry_base)

    async def email(self) -> int:
        if self.mailer is None:
            return 0
        now = utcnow()
        async with self.db.session(SYSTEM) as session:
            due = (
                await session.scalars(
                    select(ApprovalRequest)
                    .where(
                        ApprovalRequest.status == "pending",
                        ApprovalRequest.emailed_at.is_(None),
                        ApprovalRequest.email_attempts < EMAIL_ATTEMPTS,
                        ApprovalRequest.expires_at > now,
                        or_(
                            ApprovalRequest.email_next_attempt_at.is_(None),
                            ApprovalRequest.email_next_attempt_at <= now,
                        ),
                    )
                    .order_by(ApprovalRequest.created_at)
                    .limit(50)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            batch = []
            for request in due:
                request.email_attempts += 1
                request.email_next_attempt_at = now + webhooks.LEASE
                batch.append(
                    (request.id, approvals.view(request), await approver_emails(session, request))
                )
        sent = 0
        for request_id, shown, recipients in batch:
            error: str | None = None
            if recipients:
                subject, body = approval_email(shown, self.base_url)
                try:
                    await self.mailer.send(recipients, subject, body)
                except (OSError, smtplib.SMTPException) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            async with self.db.session(SYSTEM) as session:
                row = await session.get(ApprovalRequest, request_id)
                if row is None:
                    continue
                if error is None:
                    row.emailed_at = utcnow()
                    sent += 1 if recipients else 0
                else:
                    log.warning("approval email for %s failed: %s", shown["id"], error)
                    backoff = self.retry_base * 2 ** (row.email_attempts - 1)
                    row.email_next_attempt_at = utcnow() + timedelta(seconds=backoff)
        return sent
