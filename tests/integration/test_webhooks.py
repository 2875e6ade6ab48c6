"""Webhooks and email: signed deliveries to a real local receiver, retries and the delivery
log, the events ingest and status reports raise, email to approvers through a real SMTP
server (aiosmtpd), CRUD, validation and tenancy."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.errors import NotFound
from control_plane.services.notifier import Mailer, Notifier
from tests.conftest import Account, Stack, member, signup
from tests.integration.test_approvals import gateway_credential, held_decision, ingest

ALL_EVENTS = [
    "approval.requested",
    "approval.decided",
    "budget.soft_limit",
    "budget.hard_limit",
    "plan.quota_warning",
    "security.repeated_denials",
    "security.bundle_verification_failed",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base_url: str
    requests: list[Received] = field(default_factory=list)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server: /ok answers 204, /fail answers 500."""
    port = _free_port()
    got = Receiver(f"http://127.0.0.1:{port}")

    async def hook(request: Request) -> Response:
        got.requests.append(Received(request.url.path, dict(request.headers), await request.body()))
        return Response(status_code=204 if request.url.path == "/ok" else 500)

    app = Starlette(
        routes=[Route("/ok", hook, methods=["POST"]), Route("/fail", hook, methods=["POST"])]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield got
    server.should_exit = True
    await task


async def _webhook(
    client: httpx.AsyncClient, who: Account, url: str, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": url, "events": events or ALL_EVENTS, **extra},
        headers=who.headers,
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _verify(secret: str, received: Received) -> dict[str, Any]:
    parts = dict(p.split("=", 1) for p in received.headers["x-kaizen-signature"].split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    payload: dict[str, Any] = json.loads(received.body)
    assert received.headers["x-kaizen-delivery"] == payload["id"]
    assert received.headers["x-kaizen-event"] == payload["event"]
    return payload


async def _drain(stack: Stack) -> None:
    await stack.app.state.notifier.run_once()


async def _deliveries(client: httpx.AsyncClient, who: Account, webhook_id: str) -> list[Any]:
    response = await client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=who.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_approval_events_are_delivered_signed(
    client: httpx.AsyncClient, stack: Stack, owner: Account, receiver: Receiver
) -> None:
    created = await _webhook(
        client, owner, f"{receiver.base_url}/ok", ["approval.requested", "approval.decided"]
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    shown = await client.get(f"/api/v1/webhooks/{created['id']}", headers=owner.headers)
    assert secret not in shown.text
    assert secret not in (await client.get("/api/v1/webhooks", headers=owner.headers)).text
    assert secret not in (await client.get("/api/v1/audit-events", headers=owner.headers)).text

    requester = await member(client, owner, "developer")
    credential = await gateway_credential(client, owner)
    await ingest(client, credential, held_decision("wh-1", f"user:{requester.email}"))
    await _drain(stack)
    assert len(receiver.on("/ok")) == 1
    payload = _verify(secret, receiver.on("/ok")[0])
    assert payload["event"] == "approval.requested"
    assert payload["organization_id"] == owner.organization_id
    assert payload["data"]["id"] == "wh-1"
    assert payload["data"]["principal"] == f"user:{requester.email}"

    approved = await client.post("/api/v1/approvals/wh-1/approve", headers=owner.headers)
    assert approved.status_code == 200
    await _drain(stack)
    decided = _verify(secret, receiver.on("/ok")[1])
    assert decided["event"] == "approval.decided"
    assert decided["data"]["status"] == "approved"
    assert "grant" not in json.dumps(decided)

    log = await _deliveries(client, owner, created["id"])
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("approval.requested", "delivered", 1, 204),
        ("approval.decided", "delivered", 1, 204),
    ]


async def test_the_background_worker_delivers_without_help(
    client: httpx.AsyncClient, stack: Stack, owner: Account, receiver: Receiver
) -> None:
    # The stack's own worker sleeps for an hour (tests drive it); this one polls as in production.
    settings = stack.settings.model_copy(update={"notification_poll_seconds": 0.05})
    worker = Notifier(stack.db, settings, lambda: stack.app.state.secrets)
    await worker.start()
    try:
        await _webhook(client, owner, f"{receiver.base_url}/ok", ["approval.requested"])
        credential = await gateway_credential(client, owner)
        await ingest(client, credential, held_decision("bg-1", "user:someone@example.com"))
        for _ in range(100):
            if receiver.on("/ok"):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert len(receiver.on("/ok")) == 1


async def test_failures_are_retried_with_backoff_then_logged(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifier = stack.app.state.notifier
    monkeypatch.setattr(notifier, "retry_base", 0.05)
    monkeypatch.setattr(notifier, "max_attempts", 3)
    failing = await _webhook(client, owner, f"{receiver.base_url}/fail", ["approval.requested"])
    unreachable = await _webhook(
        client, owner, f"http://127.0.0.1:{_free_port()}/nobody", ["approval.requested"]
    )
    credential = await gateway_credential(client, owner)
    await ingest(client, credential, held_decision("retry-1", "user:someone@example.com"))

    await _drain(stack)
    first = (await _deliveries(client, owner, failing["id"]))[0]
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("pending", 1, 500)
    assert first["next_attempt_at"] > first["created_at"]
    for _ in range(100):
        await _drain(stack)
        logs = [(await _deliveries(client, owner, w["id"]))[0] for w in (failing, unreachable)]
        if all(d["status"] == "failed" for d in logs):
            break
        await asyncio.sleep(0.05)
    failed, refused = logs
    assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("failed", 3, 500)
    assert failed["last_error"] == "HTTP 500"
    assert len(receiver.on("/fail")) == 3
    assert all(r.headers["x-kaizen-delivery"] == failed["id"] for r in receiver.on("/fail"))
    assert (refused["status"], refused["attempts"], refused["last_status_code"]) == (
        "failed",
        3,
        None,
    )
    assert "ConnectError" in refused["last_error"]


async def test_budget_denial_and_bundle_events_fire_once_per_window(
    client: httpx.AsyncClient, stack: Stack, owner: Account, receiver: Receiver
) -> None:
    created = await _webhook(
        client,
        owner,
        f"{receiver.base_url}/ok",
        [
            "budget.soft_limit",
            "budget.hard_limit",
            "security.repeated_denials",
            "security.bundle_verification_failed",
        ],
    )
    credential = await gateway_credential(client, owner)
    budget = {
        "name": "spend",
        "scope": "team:research",
        "metric": "cost_usd",
        "period": "month",
        "window": "2026-11",
        "limit": 500,
        "soft_limit": 400,
    }
    soft = [
        held_decision(f"soft-{i}", "user:ann@example.com", budget={**budget, "used": 410 + i})
        for i in range(2)
    ]
    hard = held_decision(
        "hard-1", "user:ann@example.com", outcome="deny", budget={**budget, "used": 501}
    )
    await ingest(client, credential, *soft)
    await ingest(client, credential, hard)
    threshold = stack.settings.denial_alert_threshold
    denials = [
        held_decision(
            f"deny-{i}",
            "user:mallory@example.com",
            outcome="deny",
            time=f"2026-11-26T11:00:{i:02d}Z",
        )
        for i in range(threshold + 3)
    ]
    await ingest(client, credential, *denials[: threshold - 1])
    await ingest(client, credential, denials[threshold - 1])  # reaches the threshold
    await ingest(client, credential, *denials[threshold:])  # the same window: no second alert
    for failures in (2, 2, 3):
        reported = await client.post(
            "/api/v1/gateways/self/status",
            json={
                "instance": "sidecar-a",
                "bundle_verification_failures": failures,
                "last_verification_error": "signed by an unknown key",
            },
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert reported.status_code == 204, reported.text
    await _drain(stack)

    payloads = [_verify(created["secret"], r) for r in receiver.on("/ok")]
    events = sorted(p["event"] for p in payloads)
    assert events == [
        "budget.hard_limit",
        "budget.soft_limit",
        "security.bundle_verification_failed",
        "security.bundle_verification_failed",
        "security.repeated_denials",
    ]
    by_event = {p["event"]: p["data"] for p in payloads}
    assert by_event["budget.soft_limit"]["budget"]["used"] == 410
    assert by_event["budget.hard_limit"]["decision_id"] == "hard-1"
    # hard-1 is a deny by ann: one denial, far below the threshold.
    assert by_event["security.repeated_denials"]["principal"] == "user:mallory@example.com"
    assert by_event["security.repeated_denials"]["denials"] == threshold
    bundle = [p["data"] for p in payloads if p["event"] == "security.bundle_verification_failed"]
    assert [(b["failures"], b["new_failures"]) for b in bundle] == [(2, 2), (3, 1)]
    assert bundle[0]["last_error"] == "signed by an unknown key"


async def test_approvers_are_emailed_through_smtp(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(envelope)
            return "250 OK"

    port = _free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setattr(
            stack.app.state.notifier, "mailer", Mailer("127.0.0.1", port, "kaizen@example.com")
        )
        requester = await member(client, owner, "developer")
        approver = await member(client, owner, "security_admin")
        await member(client, owner, "auditor")
        credential = await gateway_credential(client, owner)
        await ingest(client, credential, held_decision("mail-1", f"user:{requester.email}"))
        result = await stack.app.state.notifier.run_once()
        assert result["emailed"] == 1
        again = await stack.app.state.notifier.run_once()
        assert again["emailed"] == 0
    finally:
        smtp.stop()
    assert len(messages) == 1
    envelope = messages[0]
    assert sorted(envelope.rcpt_tos) == sorted([owner.email, approver.email])
    mail = message_from_bytes(envelope.content)
    assert requester.email in mail["Subject"]
    assert "/api/v1/approvals/mail-1/approve" in mail.get_payload()


async def test_webhook_crud_validation_and_tenancy(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    chosen = "my-own-signing-secret-123"
    created = await _webhook(client, owner, "https://hooks.example.com/k", secret=chosen)
    assert created["secret"] == chosen
    assert created["secret_prefix"] == ""
    hook_id = created["id"]
    stored = await stack.app.state.secrets.get(
        uuid.UUID(owner.organization_id), f"webhooks/{hook_id}/secret"
    )
    assert stored == chosen

    patched = await client.patch(
        f"/api/v1/webhooks/{hook_id}",
        json={"events": ["approval.decided"], "enabled": False},
        headers=owner.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["events"] == ["approval.decided"]
    assert patched.json()["enabled"] is False
    null = await client.patch(
        f"/api/v1/webhooks/{hook_id}", json={"url": None}, headers=owner.headers
    )
    assert null.status_code == 422
    rotated = await client.post(f"/api/v1/webhooks/{hook_id}/secret", headers=owner.headers)
    assert rotated.status_code == 201
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != chosen

    for body, fields in (
        ({"url": "ftp://x", "events": ["approval.decided"]}, {"url"}),
        ({"url": "https://x.test", "events": ["approval.maybe"]}, {"events.0"}),
        ({"url": "https://x.test", "events": []}, {"events"}),
        ({"url": "https://x.test", "events": ["approval.decided"], "secret": "short"}, {"secret"}),
    ):
        bad = await client.post("/api/v1/webhooks", json=body, headers=owner.headers)
        assert bad.status_code == 422, body
        assert {d["field"] for d in bad.json()["error"]["details"]} == fields

    developer = await member(client, owner, "developer")
    refused = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://x.test", "events": ["approval.decided"]},
        headers=developer.headers,
    )
    assert refused.status_code == 403

    other = await signup(client, "Other Corp")
    for method, path in (
        ("GET", f"/api/v1/webhooks/{hook_id}"),
        ("PATCH", f"/api/v1/webhooks/{hook_id}"),
        ("DELETE", f"/api/v1/webhooks/{hook_id}"),
        ("GET", f"/api/v1/webhooks/{hook_id}/deliveries"),
        ("POST", f"/api/v1/webhooks/{hook_id}/secret"),
    ):
        body = {"description": "mine now"} if method == "PATCH" else None
        response = await client.request(method, path, json=body, headers=other.headers)
        assert response.status_code == 404, (method, path)
    assert (await client.get("/api/v1/webhooks", headers=other.headers)).json()["items"] == []

    deleted = await client.delete(f"/api/v1/webhooks/{hook_id}", headers=owner.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/webhooks/{hook_id}", headers=owner.headers)
    assert gone.status_code == 404
    with pytest.raises(NotFound):
        await stack.app.state.secrets.get(
            uuid.UUID(owner.organization_id), f"webhooks/{hook_id}/secret"
        )
    actions = {
        e["action"]
        for e in (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    }
    assert {
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
    } <= actions


# -- Standard Webhooks: what a receiver using the `standardwebhooks` library sees ---------------


async def _held_delivery(
    client: httpx.AsyncClient, stack: Stack, owner: Account, decision_id: str
) -> None:
    credential = await gateway_credential(client, owner)
    await ingest(client, credential, held_decision(decision_id, "user:someone@example.com"))
    await _drain(stack)


def _tampered(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


async def test_a_standard_webhooks_receiver_verifies_deliveries_and_rejects_tampering(
    client: httpx.AsyncClient, stack: Stack, owner: Account, receiver: Receiver
) -> None:
    created = await _webhook(client, owner, f"{receiver.base_url}/ok", ["approval.requested"])
    secret = created["secret"]
    await _held_delivery(client, stack, owner, "sw-1")
    (received,) = receiver.on("/ok")
    verifier = StandardWebhook(secret)  # the secret exactly as shown once, no conversion
    payload = verifier.verify(received.body, received.headers)
    assert payload["event"] == "approval.requested"
    assert payload["data"]["id"] == "sw-1"
    assert received.headers["webhook-id"] == payload["id"] == received.headers["x-kaizen-delivery"]
    # This release still sends the former header beside it (KAIZEN_WEBHOOK_LEGACY_SIGNATURE).
    assert _verify(secret, received) == payload

    headers = received.headers
    body = received.body
    stale = str(int(headers["webhook-timestamp"]) - 600)
    for tampered_body, tampered_headers in (
        (body.replace(b"sw-1", b"sw-2"), headers),  # another decision
        (body + b" ", headers),
        (body, _tampered(headers, **{"webhook-id": str(uuid.uuid4())})),  # replayed as another
        (body, _tampered(headers, **{"webhook-timestamp": stale})),
        (body, _tampered(headers, **{"webhook-signature": "v1," + "A" * 44})),
        (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
    ):
        with pytest.raises(WebhookVerificationError):
            verifier.verify(tampered_body, tampered_headers)
    other = await _webhook(client, owner, f"{receiver.base_url}/ok", ["approval.decided"])
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(other["secret"]).verify(body, headers)


async def test_retries_keep_the_webhook_id_and_the_legacy_header_can_be_turned_off(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifier = stack.app.state.notifier
    monkeypatch.setattr(notifier, "retry_base", 0.05)
    monkeypatch.setattr(notifier, "legacy_signature", False)
    created = await _webhook(client, owner, f"{receiver.base_url}/fail", ["approval.requested"])
    await _held_delivery(client, stack, owner, "sw-retry")
    for _ in range(100):
        if len(receiver.on("/fail")) >= 2:
            break
        await asyncio.sleep(0.05)
        await _drain(stack)
    first, second = receiver.on("/fail")[:2]
    verifier = StandardWebhook(created["secret"])
    assert verifier.verify(first.body, first.headers) == verifier.verify(
        second.body, second.headers
    )
    # One message, two attempts: receivers deduplicate on webhook-id.
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert "x-kaizen-signature" not in first.headers
    assert "x-kaizen-signature" not in second.headers


async def test_a_secret_of_another_form_signs_with_its_bytes(
    client: httpx.AsyncClient, stack: Stack, owner: Account, receiver: Receiver
) -> None:
    chosen = "my-own-signing-secret-123"  # not `whsec_` + base64: the key is its UTF-8 bytes
    await _webhook(client, owner, f"{receiver.base_url}/ok", ["approval.requested"], secret=chosen)
    await _held_delivery(client, stack, owner, "sw-own")
    (received,) = receiver.on("/ok")
    payload = StandardWebhook(chosen.encode()).verify(received.body, received.headers)
    assert payload["data"]["id"] == "sw-own"
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(b"another-secret-entirely!").verify(received.body, received.headers)
