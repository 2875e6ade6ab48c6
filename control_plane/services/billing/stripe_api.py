"""The Stripe configuration and client: one `StripeClient` per process (async, httpx), its
API base taken from the settings (`KAIZEN_STRIPE_API_BASE`, a local stand-in in tests).

Errors from Stripe become `ProviderError` (502) naming what failed, never the key; the
secret key and the webhook secret are never logged or returned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, NoReturn

import stripe

from control_plane.errors import Conflict, ProviderError
from control_plane.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StripeConfig:
    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    api_base: str
    # plan name -> the recurring Price sold through Checkout
    prices: Mapping[str, str]
    executions_price: str | None
    meter_event_name: str | None
    tolerance_seconds: int
    timeout_seconds: float
    grace: timedelta
    return_url: str  # the studio's billing page

    def plan_of_price(self, price_id: str | None) -> str | None:
        return next((plan for plan, price in self.prices.items() if price == price_id), None)

    @classmethod
    def of(cls, settings: Settings) -> StripeConfig | None:
        """The configuration, or None when billing with Stripe is off."""
        prices = {
            plan: price
            for plan, price in (
                ("pro", settings.stripe_price_pro),
                ("enterprise", settings.stripe_price_enterprise),
            )
            if price
        }
        key, secret = settings.stripe_secret_key, settings.stripe_webhook_secret
        if key is None or secret is None or not prices:
            return None
        return cls(
            secret_key=key.get_secret_value(),
            webhook_secret=secret.get_secret_value(),
            api_base=settings.stripe_api_base.rstrip("/"),
            prices=MappingProxyType(prices),
            executions_price=settings.stripe_price_executions,
            meter_event_name=settings.stripe_meter_event_name,
            tolerance_seconds=settings.stripe_webhook_tolerance_seconds,
            timeout_seconds=settings.stripe_timeout_seconds,
            grace=timedelta(days=settings.billing_grace_days),
            return_url=settings.control_plane_url.rstrip("/") + "/billing",
        )


class _HTTPXClient(stripe.HTTPXClient):
    """The library's httpx transport, handing httpx the encoded form as `content=`: it
    passes `data=<str>`, which httpx deprecates (a warning on every call)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return [args, kwargs]


class Billing:
    """What the billing routes and workers use: the configuration and the client (None
    while off). Built in the app's lifespan; `close` releases the client's connections."""

    def __init__(self, config: StripeConfig | None) -> None:
        self.config = config
        self._http: _HTTPXClient | None = None
        self.client: stripe.StripeClient | None = None
        if config is not None:
            self._http = _HTTPXClient(timeout=config.timeout_seconds)
            self.client = stripe.StripeClient(
                config.secret_key,
                base_addresses={"api": config.api_base},
                http_client=self._http,
                max_network_retries=1,
            )

    @property
    def configured(self) -> bool:
        return self.config is not None

    def require(self) -> tuple[StripeConfig, stripe.StripeClient]:
        if self.config is None or self.client is None:
            raise Conflict(
                "billing with Stripe is not configured on this installation; the operator "
                "sets plans (kaizen-studio org set-plan)",
                details=[{"field": "billing", "message": "not configured"}],
            )
        return self.config, self.client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]


def failed(what: str, error: stripe.StripeError) -> NoReturn:
    """Raise a 502 for a failed Stripe call: what we asked, Stripe's status and error code."""
    status = error.http_status or "no answer"
    code = f", {error.code}" if error.code else ""
    log.warning("Stripe %s failed: %s (%s%s)", what, type(error).__name__, status, code)
    raise ProviderError(
        f"Stripe could not {what} ({status}{code}); try again later",
        details=[{"field": "stripe", "message": f"{type(error).__name__} {status}{code}"}],
    ) from None
