// Plans and billing states for the billing tests (imported by tests only).
import type { BillingOut, PlanOut } from "../api/types";

export function freePlan(used: Partial<Record<string, number>> = {}, warning: PlanOut["warning"] = null): PlanOut {
  const limits: [string, number | null][] = [
    ["users", 3],
    ["agents", 10],
    ["gateways", 1],
    ["executions_per_month", 10_000],
  ];
  return {
    plan: "free",
    title: "Free",
    overrides: {},
    updated_at: null,
    warning,
    limits: limits.map(([name, limit]) => ({
      name,
      limit,
      used: used[name] ?? 0,
      enforced_by: name === "executions_per_month" ? "sidecar" : "control_plane",
    })),
  };
}

export function billingState(over: Partial<BillingOut> = {}): BillingOut {
  return { configured: true, plan: "free", for_sale: ["pro", "enterprise"], customer: false, subscription: null, grace: null, ...over };
}
