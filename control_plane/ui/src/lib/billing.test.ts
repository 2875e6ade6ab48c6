import { describe, expect, it } from "vitest";
import { banners, changedLimits, formatMoney, limitState, limitViews, offers } from "./billing";
import { billingState, freePlan } from "./billing.fixtures";
import { visibleNav } from "./nav";

describe("plan limits", () => {
  it("are near from 90 % and reached at the limit; none is unlimited; a zero limit is reached", () => {
    expect(limitState(10_000, 8_999)).toBe("ok");
    expect(limitState(10_000, 9_000)).toBe("near");
    expect(limitState(10_000, 10_000)).toBe("reached");
    expect(limitState(null, 10 ** 9)).toBe("unlimited");
    expect(limitState(0, 0)).toBe("reached");
  });
  it("show as bars with figures, executions taking the sidecars' counter when it is ahead", () => {
    const plan = freePlan({ users: 3, agents: 2 }, { window: "month:2026-12", plan: "free", used: 9_100, limit: 10_000, at: "2026-12-20T10:00:00Z" });
    const views = Object.fromEntries(limitViews(plan).map((v) => [v.name, v]));
    expect(views.users).toMatchObject({ state: "reached", percent: 100, figures: "3 of 3 (100%)" });
    expect(views.agents).toMatchObject({ state: "ok", percent: 20, figures: "2 of 10 (20%)" });
    expect(views.executions_per_month).toMatchObject({ state: "near", used: 9_100, figures: "9,100 of 10,000 (91%)" });
  });
});

describe("banners", () => {
  it("say which limit, how far and what happens, reached first", () => {
    const found = banners(freePlan({ agents: 9, users: 3, executions_per_month: 9_500 }));
    expect(found.map((b) => [b.level, b.limit])).toEqual([
      ["reached", "users"],
      ["near", "agents"],
      ["near", "executions_per_month"],
    ]);
    expect(found[0].message).toBe(
      "Members: the Free plan's limit is reached (3 of 3 (100%)). Adding members is refused until the plan is upgraded or some are removed.",
    );
    expect(found[2].message).toContain("Past the limit, every agent call is denied until the month ends.");
  });
  it("are absent below 90 %", () => {
    expect(banners(freePlan({ users: 2, executions_per_month: 8_999 }))).toEqual([]);
  });
});

describe("upgrade and manage buttons", () => {
  it("offer nothing without Stripe", () => {
    expect(offers(billingState({ configured: false, for_sale: [] }))).toEqual({ upgrades: [], manage: false });
  });
  it("offer the plans for sale but the current one, and the portal once there is a customer", () => {
    expect(offers(billingState())).toEqual({ upgrades: ["pro", "enterprise"], manage: false });
    const subscribed = billingState({
      plan: "pro",
      customer: true,
      subscription: { id: "sub_1", status: "active", plan: "pro", current_period_end: null },
    });
    expect(offers(subscribed)).toEqual({ upgrades: [], manage: true });
    const ended = billingState({ customer: true, subscription: { id: "sub_1", status: "canceled", plan: "pro", current_period_end: null } });
    expect(offers(ended)).toEqual({ upgrades: ["pro", "enterprise"], manage: true });
  });
  it("are in the navigation only for billing:read (owners and admins)", () => {
    expect(visibleNav(["billing:read"]).map((i) => i.to)).toEqual(["/billing"]);
    expect(visibleNav(["organization:read", "users:read"]).some((i) => i.to === "/billing")).toBe(false);
  });
});

describe("amounts and grace periods", () => {
  it("show invoices in their currency's unit", () => {
    expect(formatMoney(4900, "usd")).toBe("$49.00");
    expect(formatMoney(1500, "jpy")).toBe("¥1,500");
    expect(formatMoney(1234, "eur")).toBe("€12.34");
  });
  it("name the limits that change when a grace period ends", () => {
    expect(changedLimits({ users: null, agents: 100 }, { users: 3, agents: 100 })).toBe("members unlimited → 3");
  });
});
