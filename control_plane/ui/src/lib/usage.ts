// Budget consumption from GET /api/v1/usage: one row per budget and period window, the
// newest counter a sidecar reported (every 10 s) for it.
import type { BudgetUsageRow } from "../api/types";

export type UsageRow = BudgetUsageRow;

/** ok: under the soft limit (or none); soft: at or over it; hard: at or over the limit. */
export type UsageState = "ok" | "soft" | "hard";

export const STATE_TEXT: Record<UsageState, string> = {
  ok: "within budget",
  soft: "over the soft limit",
  hard: "at or over the limit",
};

export function usageState(row: Pick<UsageRow, "used" | "limit" | "soft_limit">): UsageState {
  if (row.used >= row.limit) return "hard";
  if (row.soft_limit !== null && row.used >= row.soft_limit) return "soft";
  return "ok";
}

/** used/limit; a zero limit is exhausted from the start (it denies every call). */
export function consumption(row: Pick<UsageRow, "used" | "limit">): number {
  if (row.limit > 0) return row.used / row.limit;
  return row.used > 0 ? Number.POSITIVE_INFINITY : 1;
}

/** A position on the bar, in percent of the limit, kept within 0–100. */
export function barPercent(value: number, limit: number): number {
  if (limit <= 0) return value >= 0 ? 100 : 0;
  return Math.round(Math.min(100, Math.max(0, (value / limit) * 100)) * 10) / 10;
}

const DOLLARS = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 2 });
const SMALL_DOLLARS = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumSignificantDigits: 2 });
const COUNT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

/** The unit a metric counts, for headings ("dollars", "executions", "tokens"). */
export function metricUnit(metric: string): string {
  if (metric === "cost_usd") return "dollars";
  return metric.replaceAll("_", " ");
}

/** An amount in the metric's unit: `$12.50`, `1,200 executions`, `35,000 tokens`. */
export function formatAmount(metric: string, value: number): string {
  if (metric === "cost_usd") {
    return value !== 0 && Math.abs(value) < 0.01 ? SMALL_DOLLARS.format(value) : DOLLARS.format(value);
  }
  const unit = metricUnit(metric);
  return `${COUNT.format(value)} ${value === 1 && unit.endsWith("s") ? unit.slice(0, -1) : unit}`;
}

/** "month:2026-11" → "month 2026-11"; a window without a period prefix stays as is. */
export function windowLabel(window: string): string {
  const at = window.indexOf(":");
  return at > 0 ? `${window.slice(0, at)} ${window.slice(at + 1)}` : window;
}

export interface BudgetUsage {
  budget: string;
  /** The window reported last: the one the sidecars count into now. */
  current: UsageRow;
  /** Earlier windows, newest first. */
  history: UsageRow[];
}

function newestFirst(a: UsageRow, b: UsageRow): number {
  const at = Date.parse(b.reported_at) - Date.parse(a.reported_at);
  // Within one period, windows sort by their text (ISO dates, `2026-W48`, `…T09`).
  return at !== 0 && !Number.isNaN(at) ? at : b.window.localeCompare(a.window);
}

/**
 * Rows grouped by budget, each with its current window (the most recently reported one:
 * sidecars report only the window they count into, so an old window stops being
 * reported when the period rolls over), most consumed budgets first.
 */
export function byBudget(rows: readonly UsageRow[]): BudgetUsage[] {
  const groups = new Map<string, UsageRow[]>();
  for (const row of rows) {
    const group = groups.get(row.budget);
    if (group) group.push(row);
    else groups.set(row.budget, [row]);
  }
  const budgets = [...groups].map(([budget, windows]) => {
    const sorted = [...windows].sort(newestFirst);
    return { budget, current: sorted[0], history: sorted.slice(1) };
  });
  return budgets.sort(
    (a, b) => consumption(b.current) - consumption(a.current) || a.budget.localeCompare(b.budget),
  );
}

/** The `count` most consumed budgets in their current windows (the dashboard card). */
export function topConsumers(rows: readonly UsageRow[], count = 5): BudgetUsage[] {
  return byBudget(rows).slice(0, count);
}
