"""The executions-per-month warning at 90 % (M12): raised from the sidecars' status reports,
a signed webhook event and an email to the owners (real SMTP server), once per organisation
and month, also when reports race; shown by `GET /api/v1/plan`; on both stacks (the
production one is real PostgreSQL)."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from control_plane.db.base import utcnow
from control_plane.db.models import PlanWarning, WebhookDelivery
from control_plane.db.session import SYSTEM
from control_plane.services.notifier import Mailer
from control_plane.services.plans.warnings import month_window
from tests.conftest import Account, Stack, member, signup
from tests.integration.plan_support import put_on
from tests.integration.test_webhooks import (  # noqa: F401  (receiver is a fixture)
    Receiver,
    _free_port,
    _verify,
    _webhook,
    receiver,
)

FREE_LIMIT = 10_000


def _plan_budget(used: float, *, name: str = "free-plan-executions", window: str = "") -> Any:
    return {
        "name": name,
        "scope": "org",
        "metric": "executions",
        "period": "month",
        "window": window or month_window(utcnow()),
        "used": used,
        "limit": FREE_LIMIT,
        "soft_limit": None,
    }


async def _gateway(client: httpx.AsyncClient, owner: Account) -> str:
    created = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test:8080"},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    credential: str = created.json()["credential"]
    return credential


async def _report(
    client: httpx.AsyncClient, credential: str, *budgets: Any, instance: str = "sidecar-a"
) -> None:
    response = await client.post(
        "/api/v1/gateways/self/status",
        json={"instance": instance, "budgets": list(budgets)},
        headers={"Authorization": f"Bearer {credential}"},
    )
    assert response.status_code == 204, response.text


async def _warning(client: httpx.AsyncClient, who: Account) -> Any:
    response = await client.get("/api/v1/plan", headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()["warning"]


@pytest.fixture
def smtp(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(envelope)
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setattr(
        stack.app.state.notifier, "mailer", Mailer("127.0.0.1", port, "kaizen@example.com")
    )
    yield messages
    controller.stop()


async def test_the_warning_fires_once_at_ninety_percent_as_webhook_and_email(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    receiver: Receiver,  # noqa: F811
    smtp: list[Any],
) -> None:
    await put_on(stack, owner.organization_id, "free")
    second_owner = await member(client, owner, "owner")
    await member(client, owner, "developer")  # not an owner: not emailed
    hook = await _webhook(client, owner, f"{receiver.base_url}/ok", ["plan.quota_warning"])
    credential = await _gateway(client, owner)
    last_month = "month:2000-01"

    # Below 90 %, another budget, last month's window: nothing.
    await _report(
        client,
        credential,
        _plan_budget(8_999),
        _plan_budget(9_999, name="team-executions"),
        _plan_budget(9_999, window=last_month),
        _plan_budget(9_999, name="pro-plan-executions"),  # not this organisation's plan
    )
    assert await _warning(client, owner) is None
    await _report(client, credential, _plan_budget(9_000))  # exactly 90 %: warned
    await _report(client, credential, _plan_budget(9_500))  # the same month: not again
    await _report(client, credential, _plan_budget(9_700), instance="sidecar-b")
    result = await stack.app.state.notifier.run_once()
    assert result["delivered"] == 1
    assert result["plan_warnings_emailed"] == 1
    again = await stack.app.state.notifier.run_once()
    assert again["delivered"] == 0
    assert again["plan_warnings_emailed"] == 0

    [delivery] = receiver.on("/ok")
    payload = _verify(hook["secret"], delivery)
    assert payload["event"] == "plan.quota_warning"
    assert payload["data"] == {
        "limit": "executions_per_month",
        "plan": "free",
        "window": month_window(utcnow()),
        "used": 9_000,
        "allowed": FREE_LIMIT,
        "percent": 90.0,
    }
    [envelope] = smtp
    assert sorted(envelope.rcpt_tos) == sorted([owner.email, second_owner.email])
    mail = message_from_bytes(envelope.content)
    assert "90% of this month's executions" in mail["Subject"]
    assert "9,000 of the 10,000" in mail.get_payload()

    warning = await _warning(client, owner)
    assert warning["used"] == 9_000
    assert warning["limit"] == FREE_LIMIT
    assert warning["plan"] == "free"


async def test_racing_reports_warn_exactly_once(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    credential = await _gateway(client, owner)
    await asyncio.gather(
        *[
            _report(client, credential, _plan_budget(9_100 + i), instance=f"sidecar-{i}")
            for i in range(10)
        ]
    )
    async with stack.db.session(SYSTEM) as session:
        rows = await session.scalar(select(func.count(PlanWarning.id)))
    assert rows == 1


async def test_no_warning_without_a_monthly_limit_and_none_seen_by_another_tenant(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    receiver: Receiver,  # noqa: F811
) -> None:
    # The test organisations start on Enterprise: no executions limit, nothing to warn of.
    await _webhook(client, owner, f"{receiver.base_url}/ok", ["plan.quota_warning"])
    credential = await _gateway(client, owner)
    await _report(client, credential, _plan_budget(10**9, name="enterprise-plan-executions"))
    assert await _warning(client, owner) is None

    await put_on(stack, owner.organization_id, "free")
    await _report(client, credential, _plan_budget(9_999))
    assert (await _warning(client, owner))["used"] == 9_999
    other = await signup(client, "Other")
    await put_on(stack, other.organization_id, "free")
    assert await _warning(client, other) is None
    async with stack.db.session(SYSTEM) as session:
        deliveries = await session.scalar(select(func.count(WebhookDelivery.id)))
    assert deliveries == 1
