import { describe, expect, it } from "vitest";
import { scale, stackedBars, sumCounts, totalsByKey, windowParams, type AggregateBucket } from "./dashboard";

const buckets: AggregateBucket[] = [
  { start: "2026-11-26T10:00:00Z", counts: { allow: 6, deny: 2 }, total: 8 },
  { start: "2026-11-26T11:00:00Z", counts: { allow: 1, require_approval: 1, unknown: 2 }, total: 4 },
  { start: "2026-11-26T12:00:00Z", counts: {}, total: 0 },
];

describe("dashboard figures", () => {
  it("stack each bucket's outcomes against the busiest bucket", () => {
    const bars = stackedBars(buckets);
    expect(bars[0].segments).toEqual([
      { outcome: "allow", count: 6, percent: 75 },
      { outcome: "deny", count: 2, percent: 25 },
    ]);
    // Outcomes the chart has no colour for are stacked as "other".
    expect(bars[1].segments.map((s) => [s.outcome, s.count])).toEqual([["allow", 1], ["require_approval", 1], ["other", 2]]);
    expect(bars[2].segments).toEqual([]);
  });

  it("rank keys by their totals over the window", () => {
    const ranked = totalsByKey(["user:b", "user:a"], [
      { start: "x", counts: { "user:a": 1, "user:b": 2 }, total: 3 },
      { start: "y", counts: { "user:a": 4 }, total: 4 },
    ]);
    expect(ranked).toEqual([
      { key: "user:a", count: 5 },
      { key: "user:b", count: 2 },
    ]);
    expect(sumCounts(buckets)).toEqual({ allow: 7, deny: 2, require_approval: 1, unknown: 2 });
  });

  it("asks for hourly buckets over a day and daily ones over a week", () => {
    const now = Date.parse("2026-11-26T12:34:56Z");
    expect(windowParams("24h", now)).toEqual({ since: "2026-11-25T12:34:00.000Z", interval: "hour" });
    expect(windowParams("7d", now).interval).toBe("day");
    expect(scale(0, 0)).toBe(0);
  });
});
