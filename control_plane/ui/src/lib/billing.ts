// The billing page's logic: each plan limit's state, the banners when one is near (≥ 90 %)
// or reached, what Stripe lets the organisation do, and amounts in invoice currencies.
import type { BillingOut, PlanLimit, PlanOut } from "../api/types";

/** The share of a limit at which the studio warns (the control plane emails at the same mark). */
export const NEAR = 0.9;

export const LIMIT_LABELS: Record<string, string> = {
  users: "Members",
  agents: "Agents",
  gateways: "Gateways",
  executions_per_month: "Executions this month",
};

const COUNT = new Intl.NumberFormat("en-US");

export function limitLabel(name: string): string {
  return LIMIT_LABELS[name] ?? name.replaceAll("_", " ");
}

export type LimitState = "unlimited" | "ok" | "near" | "reached";

/** A limit's state; a limit of 0 is reached from the start (nothing is allowed). */
export function limitState(limit: number | null, used: number): LimitState {
  if (limit === null) return "unlimited";
  if (used >= limit) return "reached";
  if (used >= NEAR * limit) return "near";
  return "ok";
}

/** Executions as the highest count known: the sidecars' counter (the month's warning) may
 *  run ahead of the execution records `used` counts. */
export function usedOf(plan: Pick<PlanOut, "warning">, item: PlanLimit): number {
  if (item.name === "executions_per_month" && plan.warning) return Math.max(item.used, plan.warning.used);
  return item.used;
}

export interface LimitView {
  name: string;
  label: string;
  limit: number | null;
  used: number;
  state: LimitState;
  /** Bar width in percent (0–100); 0 when unlimited. */
  percent: number;
  /** "9,500 of 10,000 (95%)", "3 (unlimited)". */
  figures: string;
}

export function limitViews(plan: PlanOut): LimitView[] {
  return plan.limits.map((item) => {
    const used = usedOf(plan, item);
    const state = limitState(item.limit, used);
    let percent = 0;
    let figures = `${COUNT.format(used)} (unlimited)`;
    if (item.limit !== null) {
      const ratio = item.limit > 0 ? used / item.limit : 1;
      percent = Math.round(Math.min(1, Math.max(0, ratio)) * 1000) / 10;
      figures = `${COUNT.format(used)} of ${COUNT.format(item.limit)} (${Math.round(ratio * 100)}%)`;
    }
    return { name: item.name, label: limitLabel(item.name), limit: item.limit, used, state, percent, figures };
  });
}

export interface Banner {
  level: "near" | "reached";
  limit: string;
  message: string;
}

/** What happens at each limit, in words. */
function consequence(name: string, reached: boolean): string {
  if (name === "executions_per_month") {
    return reached
      ? "Every agent call is denied until the month ends or the plan is upgraded."
      : "Past the limit, every agent call is denied until the month ends.";
  }
  const noun = limitLabel(name).toLowerCase();
  return reached
    ? `Adding ${noun} is refused until the plan is upgraded or some are removed.`
    : `At the limit, adding ${noun} is refused.`;
}

/** One banner per limit near or reached, reached ones first. */
export function banners(plan: PlanOut): Banner[] {
  const found: Banner[] = [];
  for (const view of limitViews(plan)) {
    if (view.state !== "near" && view.state !== "reached") continue;
    const reached = view.state === "reached";
    const head = reached ? `${view.label}: the ${plan.title} plan's limit is reached` : `${view.label}: nearly at the ${plan.title} plan's limit`;
    found.push({ level: view.state, limit: view.name, message: `${head} (${view.figures}). ${consequence(view.name, reached)}` });
  }
  return found.sort((a, b) => (a.level === b.level ? 0 : a.level === "reached" ? -1 : 1));
}

/** Stripe states in which the organisation is paying (as the API's services say). */
const PAYING = new Set(["active", "trialing", "past_due"]);

export interface Offers {
  /** Plans Checkout sells that the organisation can move to now. */
  upgrades: string[];
  /** The customer portal (change or cancel, payment methods, invoices). */
  manage: boolean;
}

/** What the upgrade/manage buttons offer: nothing unless Stripe is configured. */
export function offers(billing: BillingOut): Offers {
  if (!billing.configured) return { upgrades: [], manage: false };
  const paying = billing.subscription !== null && billing.subscription !== undefined && PAYING.has(billing.subscription.status);
  return {
    upgrades: paying ? [] : billing.for_sale.filter((plan) => plan !== billing.plan),
    manage: billing.customer,
  };
}

export const PLAN_TITLES: Record<string, string> = { free: "Free", pro: "Pro", enterprise: "Enterprise" };

export function planTitle(name: string): string {
  return PLAN_TITLES[name] ?? name;
}

/** An invoice amount (Stripe's smallest currency unit) as money: 4900 usd → "$49.00". */
export function formatMoney(amount: number, currency: string | null | undefined): string {
  const code = (currency || "usd").toUpperCase();
  let format: Intl.NumberFormat;
  try {
    format = new Intl.NumberFormat("en-US", { style: "currency", currency: code });
  } catch {
    return `${COUNT.format(amount)} ${code}`;
  }
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(amount / 10 ** digits);
}

/** "members unlimited, agents 100" for the limits that differ between two sets. */
export function changedLimits(from: Record<string, number | null>, to: Record<string, number | null>): string {
  return Object.keys(to)
    .filter((name) => from[name] !== to[name])
    .map((name) => {
      const value = (v: number | null | undefined) => (v === null || v === undefined ? "unlimited" : COUNT.format(v));
      return `${limitLabel(name).toLowerCase()} ${value(from[name])} → ${value(to[name])}`;
    })
    .join(", ");
}
