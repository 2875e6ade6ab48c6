import { describe, expect, it } from "vitest";
import {
  barPercent,
  byBudget,
  consumption,
  formatAmount,
  metricUnit,
  topConsumers,
  usageState,
  windowLabel,
  type UsageRow,
} from "./usage";

let next = 0;
function row(budget: string, window: string, used: number, reported: string, extra: Partial<UsageRow> = {}): UsageRow {
  next += 1;
  return {
    id: `row-${next}`,
    budget,
    scope: "team:research",
    metric: "cost_usd",
    period: window.split(":")[0],
    window,
    used,
    limit: 500,
    soft_limit: 400,
    reported_at: reported,
    gateway_id: null,
    ...extra,
  };
}

describe("usage state", () => {
  it("is ok under the soft limit, soft at or over it, hard at or over the limit", () => {
    const limits = { limit: 500, soft_limit: 400 };
    expect(usageState({ used: 399.99, ...limits })).toBe("ok");
    expect(usageState({ used: 400, ...limits })).toBe("soft");
    expect(usageState({ used: 499.99, ...limits })).toBe("soft");
    expect(usageState({ used: 500, ...limits })).toBe("hard");
    expect(usageState({ used: 720, ...limits })).toBe("hard");
  });

  it("without a soft limit goes straight from ok to hard", () => {
    expect(usageState({ used: 999, limit: 1000, soft_limit: null })).toBe("ok");
    expect(usageState({ used: 1000, limit: 1000, soft_limit: null })).toBe("hard");
  });

  it("treats a zero limit as exhausted, and keeps bars within the track", () => {
    expect(usageState({ used: 0, limit: 0, soft_limit: null })).toBe("hard");
    expect(consumption({ used: 0, limit: 0 })).toBe(1);
    expect(consumption({ used: 3, limit: 0 })).toBe(Number.POSITIVE_INFINITY);
    expect(barPercent(0, 0)).toBe(100);
    expect(barPercent(250, 500)).toBe(50);
    expect(barPercent(1 / 3, 1)).toBe(33.3);
    expect(barPercent(720, 500)).toBe(100);
    expect(barPercent(-5, 500)).toBe(0);
  });
});

describe("units", () => {
  it("shows cost in dollars and counts with their unit", () => {
    expect(formatAmount("cost_usd", 412.5)).toBe("$412.50");
    expect(formatAmount("cost_usd", 0)).toBe("$0.00");
    expect(formatAmount("cost_usd", 0.0042)).toBe("$0.0042");
    expect(formatAmount("executions", 1200)).toBe("1,200 executions");
    expect(formatAmount("executions", 1)).toBe("1 execution");
    expect(formatAmount("tokens", 35000)).toBe("35,000 tokens");
    expect(metricUnit("cost_usd")).toBe("dollars");
    expect(metricUnit("tool_calls")).toBe("tool calls");
  });

  it("names a window by its period", () => {
    expect(windowLabel("month:2026-11")).toBe("month 2026-11");
    expect(windowLabel("week:2026-W48")).toBe("week 2026-W48");
    expect(windowLabel("custom")).toBe("custom");
  });
});

describe("current window per budget", () => {
  it("takes the window reported last as current and keeps the others as history, newest first", () => {
    const rows = [
      row("spend", "month:2026-09", 480, "2026-09-30T23:59:55Z"),
      row("spend", "month:2026-11", 120, "2026-11-26T10:00:10Z"),
      row("spend", "month:2026-10", 510, "2026-10-31T23:59:58Z"),
    ];
    const [spend] = byBudget(rows);
    expect(spend.current.window).toBe("month:2026-11");
    expect(spend.history.map((r) => r.window)).toEqual(["month:2026-10", "month:2026-09"]);
  });

  it("orders windows reported at the same instant by their text", () => {
    const at = "2026-11-26T10:00:00Z";
    const [calls] = byBudget([row("calls", "hour:2026-11-26T09", 3, at), row("calls", "hour:2026-11-26T10", 1, at)]);
    expect(calls.current.window).toBe("hour:2026-11-26T10");
  });

  it("ranks budgets by how much of their current window they used", () => {
    const at = "2026-11-26T10:00:00Z";
    const rows = [
      row("a-low", "day:2026-11-26", 10, at, { limit: 100, soft_limit: null }),
      row("b-over", "day:2026-11-26", 130, at, { limit: 100, soft_limit: null }),
      // An old window nearly full does not rank the budget: its current window does.
      row("c-mid", "day:2026-11-25", 99, "2026-11-25T23:59:59Z", { limit: 100, soft_limit: null }),
      row("c-mid", "day:2026-11-26", 50, at, { limit: 100, soft_limit: null }),
      row("d-mid", "day:2026-11-26", 500, at, { limit: 1000, soft_limit: null }),
      row("e-zero", "day:2026-11-26", 0, at, { limit: 0, soft_limit: null }),
      row("f-none", "day:2026-11-26", 0, at, { limit: 10, soft_limit: null }),
      row("g-some", "day:2026-11-26", 2, at, { limit: 10, soft_limit: null }),
    ];
    expect(byBudget(rows).map((b) => b.budget)).toEqual(["b-over", "e-zero", "c-mid", "d-mid", "g-some", "a-low", "f-none"]);
    expect(topConsumers(rows).map((b) => b.budget)).toEqual(["b-over", "e-zero", "c-mid", "d-mid", "g-some"]);
    expect(topConsumers([])).toEqual([]);
  });
});
