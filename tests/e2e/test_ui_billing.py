"""The billing page in real Chromium against a real control-plane process configured for
Stripe, with the local Stripe stand-in (`tests/stripe_local.py`; Stripe cannot run here)
as its API and hosted pages: a Free organisation at its members limit sees the banner on
every page, upgrades through Checkout (the stand-in "pays" and delivers the signed
webhooks), comes back on Pro with an invoice, and reaches the customer portal.

Needs the built studio and `/usr/bin/chromium`, like `test_ui.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.studio_process import require_built_studio, serving
from tests.e2e.test_ui import (  # noqa: F401  (browser and page are fixtures)
    browser,
    nav,
    page,
    shot,
    sign_up,
)
from tests.e2e.test_up import free_port
from tests.stripe_local import LocalStripe, running_in_thread

PRICE_PRO = "price_pro_monthly"


@pytest.fixture(scope="module")
def local_stripe() -> Iterator[LocalStripe]:
    with running_in_thread() as stripe:
        yield stripe


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, local_stripe: LocalStripe) -> Iterator[str]:
    require_built_studio()
    home = tmp_path_factory.mktemp("ui-billing")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env.update(
        KAIZEN_HOME=str(home),
        KAIZEN_LOGIN_ATTEMPTS_PER_WINDOW="1000",
        KAIZEN_DEFAULT_PLAN="free",
        KAIZEN_CONTROL_PLANE_URL=url,
        KAIZEN_STRIPE_SECRET_KEY=local_stripe.secret_key,
        KAIZEN_STRIPE_WEBHOOK_SECRET=local_stripe.webhook_secret,
        KAIZEN_STRIPE_API_BASE=local_stripe.base_url,
        KAIZEN_STRIPE_PRICE_PRO=PRICE_PRO,
    )
    local_stripe.webhook_url = f"{url}/api/v1/billing/stripe/webhook"
    with serving(env, port, home / "control-plane.log") as served:
        yield served


def test_a_free_organisation_at_its_limit_upgrades_through_stripe(
    studio: str,
    page: Page,  # noqa: F811
    local_stripe: LocalStripe,
) -> None:
    email = sign_up(page, studio, "Initech")
    token = httpx.post(
        f"{studio}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ).json()["access_token"]
    for n in range(2):  # the owner and two more: Free's 3 members
        added = httpx.post(
            f"{studio}/api/v1/users",
            headers={"Authorization": f"Bearer {token}"},
            json={"email": f"member-{n}-{time.monotonic_ns()}@example.com", "password": PASSWORD},
        )
        assert added.status_code == 201, added.text

    # The limit is reached: a message on any page, with the way to the billing page.
    nav(page, "Agents")
    banner = page.get_by_test_id("plan-banner")
    expect(banner).to_contain_text("Members: the Free plan's limit is reached (3 of 3 (100%))")
    banner.get_by_role("link", name="Plan and billing").click()

    expect(page.get_by_role("heading", name="Plan and billing", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Free plan")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Adding members is refused")
    members = page.get_by_role("meter", name="Members used of the plan")
    expect(members).to_have_attribute("aria-valuetext", "3 of 3 (100%), limit reached")
    expect(page.get_by_role("meter")).to_have_count(4)
    expect(page.get_by_role("button", name="Manage subscription")).to_have_count(0)
    expect(page.get_by_text("No invoices yet.")).to_be_visible()
    shot(page, "billing-free")

    # Checkout on (the stand-in of) Stripe's page, which pays and comes back.
    page.get_by_role("button", name="Upgrade to Pro").click()
    page.wait_for_url(f"{studio}/billing?checkout=success")
    expect(page.get_by_text("Thank you: the payment went through.")).to_be_visible()
    expect(page.get_by_role("heading", name="Pro plan")).to_be_visible()
    expect(page.get_by_text("active", exact=True)).to_be_visible()
    expect(members).to_have_count(0)  # Pro: members unlimited, no bar
    expect(page.get_by_test_id("limit-users")).to_contain_text("3 (unlimited)")
    expect(page.get_by_role("alert")).to_have_count(0)
    invoice = page.get_by_role("row", name="KZN-0001")
    expect(invoice).to_contain_text("$49.00")
    hosted = local_stripe.invoices[0]["hosted_invoice_url"]
    expect(invoice.get_by_role("link", name="View")).to_have_attribute("href", hosted)
    expect(page.get_by_role("button", name="Upgrade to Pro")).to_have_count(0)
    shot(page, "billing-pro")

    page.get_by_role("button", name="Manage subscription").click()
    portal = page.get_by_role("heading", name="Customer portal (local Stripe stand-in)")
    expect(portal).to_be_visible()
    assert page.url.startswith(f"{local_stripe.base_url}/p/session/")
