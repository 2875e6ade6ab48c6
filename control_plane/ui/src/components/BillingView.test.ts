// The billing page's content rendered to HTML (react-dom/server; no browser needed).
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import type { BillingOut, Invoice, PlanOut } from "../api/types";
import { billingState, freePlan } from "../lib/billing.fixtures";
import { BillingView } from "./BillingView";

function render(plan: PlanOut, billing: BillingOut, invoices: Invoice[] | null = [], canManage = true): string {
  const noop = () => undefined;
  return renderToStaticMarkup(
    createElement(BillingView, { plan, billing, invoices, canManage, busy: false, onUpgrade: noop, onManage: noop }),
  );
}

const INVOICE: Invoice = {
  id: "in_1",
  number: "KZN-0001",
  status: "paid",
  currency: "usd",
  amount_due: 4900,
  amount_paid: 4900,
  created: "2026-12-01T10:00:00Z",
  period_start: null,
  period_end: null,
  hosted_invoice_url: "https://invoice.stripe.com/i/abc",
  invoice_pdf: null,
};

describe("BillingView", () => {
  it("shows the plan, each limit as a meter and a banner for a reached limit", () => {
    const html = render(freePlan({ users: 3, executions_per_month: 9_500 }), billingState());
    expect(html).toContain("Free plan");
    expect(html).toMatch(/role="alert"[^>]*data-testid="banner-users"/);
    expect(html).toMatch(/role="status"[^>]*data-testid="banner-executions_per_month"/);
    expect(html).toContain('aria-valuetext="9,500 of 10,000 (95%), nearly at the limit"');
    expect(html.match(/role="meter"/g)).toHaveLength(4);
  });
  it("offers upgrades with Stripe to those who may manage billing, and nothing otherwise", () => {
    expect(render(freePlan(), billingState())).toContain("Upgrade to Pro");
    expect(render(freePlan(), billingState(), [], false)).not.toContain("Upgrade to");
    const off = render(freePlan(), billingState({ configured: false, for_sale: [] }), null);
    expect(off).not.toContain("Upgrade to");
    expect(off).not.toContain("Manage subscription");
    expect(off).not.toContain("Invoices");
    expect(off).toContain("billing with Stripe is not configured here");
  });
  it("lists invoices with Stripe's page, and the portal for a subscriber", () => {
    const billing = billingState({
      plan: "pro",
      customer: true,
      subscription: { id: "sub_1", status: "active", plan: "pro", current_period_end: "2027-01-01T00:00:00Z" },
    });
    const html = render({ ...freePlan(), plan: "pro", title: "Pro" }, billing, [INVOICE]);
    expect(html).toContain("Manage subscription");
    expect(html).not.toContain("Upgrade to");
    expect(html).toContain("KZN-0001");
    expect(html).toContain("$49.00");
    expect(html).toContain('href="https://invoice.stripe.com/i/abc" target="_blank" rel="noopener noreferrer"');
  });
  it("explains a downgrade's grace period", () => {
    const billing = billingState({
      grace: {
        until: "2026-12-20T10:00:00Z",
        limits: { users: null, agents: 100, gateways: 1, executions_per_month: 100_000 },
        plan_limits: { users: 3, agents: 10, gateways: 1, executions_per_month: 10_000 },
      },
    });
    const html = render(freePlan({ users: 5 }), billing);
    expect(html).toContain("Grace period after the downgrade to Free");
    expect(html).toContain("members unlimited → 3, agents 100 → 10, executions this month 100,000 → 10,000");
    expect(html).toContain("Nothing is deleted");
  });
});
