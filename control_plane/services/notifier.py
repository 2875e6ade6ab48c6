"""The notification worker and its email.

`Notifier` runs in the app's lifespan: it expires overdue approval requests, drains the
webhook outbox (`webhooks.py`; the events come from `notifications.py`) and emails
approvers about new requests and owners about the plan's 90 % warning (SMTP, off while
`KAIZEN_SMTP_HOST` is unset). Every step is safe with several replicas.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import ApprovalRequest, Membership, NotificationCounter, User
from control_plane.db.session import SYSTEM, Database
from control_plane.services import approvals, webhooks
from control_plane.services.plans import warnings as plan_warnings
from control_plane.services.secrets import SecretStore
from control_plane.settings import Settings
from policy.net.outbound_http import guarded_client

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

EMAIL_ATTEMPTS = 5
SWEEP_EVERY = timedelta(seconds=10)


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
