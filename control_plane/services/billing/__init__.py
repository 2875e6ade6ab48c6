"""Billing with Stripe (M12), through the official `stripe` library.

Modules: `stripe_api` (the configuration and the one `StripeClient`; off unless
`KAIZEN_STRIPE_SECRET_KEY`, `KAIZEN_STRIPE_WEBHOOK_SECRET` and a price are set), `accounts`
(an organisation's Stripe customer: Checkout for upgrades, the customer portal, invoices),
`events` (signed webhooks: verified, deduplicated by event id, the plan changed from the
subscription), `metering` (executions over the plan as meter events; grace periods ending).

Nothing outside these modules and `api/billing.py` calls Stripe: without it (the embedded
default) plans are set by the operator, and a Stripe outage fails only the billing routes.
"""
