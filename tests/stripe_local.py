"""A local stand-in for the Stripe API endpoints Kaizen Studio calls, for tests: Stripe
cannot run here.

It speaks Stripe's wire protocol to the official `stripe` library pointed at it (the
client's `api` base address): `Authorization: Bearer sk_test_…` checked, form-encoded
bodies with Stripe's bracket notation (`line_items[0][price]=…`), query strings on GET,
Stripe's JSON object shapes (`object`, ids with their prefixes, lists as `{"object":
"list", "data": …}`) and its error body (`{"error": {"type", "code", "message", "param"}}`).

Endpoints: `POST /v1/customers`, `POST /v1/checkout/sessions`, `POST
/v1/billing_portal/sessions`, `GET /v1/subscriptions/{id}`, `GET /v1/invoices`, `POST
/v1/billing/meter_events`.

What Stripe's side does on its own, the test asks for: `pay` completes a checkout (the
customer paid; a subscription exists; `GET /c/pay/{session}`, the hosted page a browser is
sent to, does it and delivers the events to `webhook_url`), `change_subscription` is what
the customer does in the portal, and `deliver` sends an event the way Stripe does: a JSON body with
`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(whsec, "<t>.<body>")>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

API_VERSION = "2026-10-29.clover"
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into objects: `a[b][0][c]=v` -> {"a": {"b": [{"c": v}]}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"bad parameter name {key!r}")
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            converted = {k: lists(v) for k, v in node.items()}
            if converted and all(k.isdigit() for k in converted):
                return [converted[k] for k in sorted(converted, key=int)]
            return converted
        return node

    decoded: dict[str, Any] = lists(root)
    return decoded


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class StripeRefusal(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str = ""):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass
class LocalStripe:
    secret_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(16))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(16))
    base_url: str = ""
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    subscription_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    meter_events: list[dict[str, Any]] = field(default_factory=list)
    # Every API request as (method, path, params), for assertions on what was asked.
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # Set to make every API call answer 500 (Stripe down).
    down: bool = False
    # Where the hosted checkout page delivers its events (a browser test's control plane).
    webhook_url: str | None = None

    # -- the API ---------------------------------------------------------------------------

    def _check_key(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(key, self.secret_key):
            shown = f"{key[:8]}****{key[-4:]}" if key else "none"
            raise StripeRefusal(401, f"Invalid API Key provided: {shown}")

    @staticmethod
    def _required(params: dict[str, Any], *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise StripeRefusal(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )

    def _customer(self, customer_id: Any) -> dict[str, Any]:
        customer = self.customers.get(str(customer_id))
        if customer is None:
            raise StripeRefusal(
                400,
                f"No such customer: '{customer_id}'",
                code="resource_missing",
                param="customer",
            )
        return customer

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": _id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata") or {},
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        self._required(params, "mode", "success_url", "line_items")
        self._customer(params.get("customer"))
        items = params["line_items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise StripeRefusal(
                400, "Invalid array", code="parameter_invalid_array", param="line_items"
            )
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "created": int(time.time()),
            "mode": params["mode"],
            "customer": params.get("customer"),
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "status": "open",
            "payment_status": "unpaid",
            "subscription": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/c/pay/{session_id}",
            "livemode": False,
        }
        self.checkout_sessions[session_id] = session
        self.line_items[session_id] = items
        self.subscription_data[session_id] = params.get("subscription_data") or {}
        return session

    def create_portal_session(self, params: dict[str, Any]) -> dict[str, Any]:
        self._required(params, "customer")
        self._customer(params["customer"])
        session = {
            "id": _id("bps"),
            "object": "billing_portal.session",
            "created": int(time.time()),
            "customer": params["customer"],
            "return_url": params.get("return_url"),
            "url": f"{self.base_url}/p/session/{secrets.token_hex(8)}",
            "livemode": False,
        }
        self.portal_sessions[session["id"]] = session
        return session

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise StripeRefusal(
                404,
                f"No such subscription: '{subscription_id}'",
                code="resource_missing",
                param="id",
            )
        return subscription

    def list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = int(params.get("limit") or 10)
        found = [i for i in self.invoices if i["customer"] == params.get("customer")]
        found.sort(key=lambda i: i["created"], reverse=True)
        return {
            "object": "list",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "url": "/v1/invoices",
        }

    def create_meter_event(self, params: dict[str, Any]) -> dict[str, Any]:
        self._required(params, "event_name", "payload")
        payload = params["payload"]
        if "stripe_customer_id" not in payload or "value" not in payload:
            raise StripeRefusal(400, "payload needs stripe_customer_id and value", param="payload")
        event = {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "event_name": params["event_name"],
            "identifier": params.get("identifier") or _id("mev"),
            "livemode": False,
            "payload": payload,
            "timestamp": int(params.get("timestamp") or time.time()),
        }
        self.meter_events.append(event)
        return event

    async def _handle(self, request: Request) -> JSONResponse:
        try:
            if self.down:
                raise StripeRefusal(500, "An unknown error occurred", code="api_error")
            self._check_key(request)
            if request.method == "GET":
                params = decode_form(list(request.query_params.multi_items()))
            else:
                body = (await request.body()).decode()
                params = decode_form(parse_qsl(body, keep_blank_values=True))
            path = request.url.path
            self.requests.append((request.method, path, params))
            routes = {
                ("POST", "/v1/customers"): lambda: self.create_customer(params),
                ("POST", "/v1/checkout/sessions"): lambda: self.create_checkout_session(params),
                ("POST", "/v1/billing_portal/sessions"): lambda: self.create_portal_session(params),
                ("GET", "/v1/invoices"): lambda: self.list_invoices(params),
                ("POST", "/v1/billing/meter_events"): lambda: self.create_meter_event(params),
            }
            handler = routes.get((request.method, path))
            if handler is not None:
                return JSONResponse(handler(), headers={"Request-Id": _id("req")})
            if request.method == "GET" and path.startswith("/v1/subscriptions/"):
                return JSONResponse(self.get_subscription(path.rsplit("/", 1)[1]))
            raise StripeRefusal(404, f"Unrecognized request URL ({request.method}: {path}).")
        except StripeRefusal as refusal:
            kind = "api_error" if refusal.status >= 500 else "invalid_request_error"
            error: dict[str, Any] = {"type": kind, "message": refusal.message}
            if refusal.code:
                error["code"] = refusal.code
            if refusal.param:
                error["param"] = refusal.param
            return JSONResponse({"error": error}, status_code=refusal.status)

    async def _hosted_checkout(self, request: Request) -> Response:
        """Stripe's hosted checkout page, reduced to its outcome: the customer pays, Stripe
        delivers the signed events to the webhook URL, then sends the browser back."""
        session = self.checkout_sessions.get(request.path_params["session_id"])
        if session is None or session["status"] != "open":
            return HTMLResponse("<h1>This checkout session is not open</h1>", status_code=404)
        events = self.pay(session["id"])
        if self.webhook_url:
            async with httpx.AsyncClient() as http:
                for event in events:
                    delivered = await self.deliver(http, self.webhook_url, event)
                    if delivered.status_code != 200:
                        return HTMLResponse(
                            f"<h1>Webhook refused</h1><pre>{delivered.status_code}</pre>", 502
                        )
        return RedirectResponse(session["success_url"], status_code=303)

    async def _hosted_portal(self, request: Request) -> Response:
        return HTMLResponse("<h1>Customer portal (local Stripe stand-in)</h1>")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/{path:path}", self._handle, methods=["GET", "POST"]),
                Route("/c/pay/{session_id}", self._hosted_checkout),
                Route("/p/session/{token}", self._hosted_portal),
            ]
        )

    # -- what Stripe does on its own ---------------------------------------------------------

    def event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }

    def _subscription(self, customer: str, price: str, metadata: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        subscription_id = _id("sub")
        return {
            "id": subscription_id,
            "object": "subscription",
            "created": now,
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": False,
            "metadata": metadata,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": _id("si"),
                        "object": "subscription_item",
                        "price": {"id": price, "object": "price", "currency": "usd"},
                        "quantity": 1,
                        "current_period_start": now,
                        "current_period_end": now + 30 * 86400,
                    }
                ],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "livemode": False,
        }

    def pay(self, session_id: str) -> list[dict[str, Any]]:
        """The customer pays the checkout: the session completes and a subscription to its
        first price is active. The events Stripe sends, in its order."""
        session = self.checkout_sessions[session_id]
        price = self.line_items[session_id][0]["price"]
        metadata = self.subscription_data[session_id].get("metadata") or {}
        subscription = self._subscription(session["customer"], price, dict(metadata))
        self.subscriptions[subscription["id"]] = subscription
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        self.invoices.append(
            {
                "id": _id("in"),
                "object": "invoice",
                "customer": session["customer"],
                "subscription": subscription["id"],
                "number": f"KZN-{len(self.invoices) + 1:04d}",
                "status": "paid",
                "currency": "usd",
                "amount_due": 4900,
                "amount_paid": 4900,
                "created": int(time.time()) + len(self.invoices),
                "period_start": subscription["items"]["data"][0]["current_period_start"],
                "period_end": subscription["items"]["data"][0]["current_period_end"],
                "hosted_invoice_url": f"{self.base_url}/i/{secrets.token_hex(8)}",
                "invoice_pdf": f"{self.base_url}/i/{secrets.token_hex(8)}/pdf",
                "livemode": False,
            }
        )
        return [
            self.event("checkout.session.completed", session),
            self.event("customer.subscription.created", subscription),
        ]

    def change_subscription(
        self, subscription_id: str, *, price: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        """The customer changes plan or cancels in the portal; the event Stripe sends."""
        subscription = self.subscriptions[subscription_id]
        if price is not None:
            subscription["items"]["data"][0]["price"]["id"] = price
        if status is not None:
            subscription["status"] = status
        kind = "deleted" if subscription["status"] == "canceled" else "updated"
        return self.event(f"customer.subscription.{kind}", subscription)

    def signed(self, event: dict[str, Any], *, timestamp: int | None = None) -> tuple[bytes, str]:
        payload = json.dumps(event, indent=2).encode()
        return payload, sign(payload, self.webhook_secret, timestamp)

    async def deliver(
        self,
        http: httpx.AsyncClient,
        url: str,
        event: dict[str, Any],
        *,
        timestamp: int | None = None,
    ) -> httpx.Response:
        """POST `event` to `url` as Stripe delivers webhooks."""
        payload, signature = self.signed(event, timestamp=timestamp)
        return await http.post(
            url,
            content=payload,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_in_thread() -> Iterator[LocalStripe]:
    """`running` for synchronous tests (a browser test): served from a thread."""
    port = _free_port()
    stripe = LocalStripe(base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(stripe.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="local-stripe", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield stripe
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@asynccontextmanager
async def running() -> AsyncIterator[LocalStripe]:
    """A `LocalStripe` served on 127.0.0.1 (a real HTTP server) while the block runs."""
    port = _free_port()
    stripe = LocalStripe(base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(stripe.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield stripe
    finally:
        server.should_exit = True
        await task
