import { describe, expect, it } from "vitest";
import { bucketByOutcome, outcomeTotals, scale, topDenied } from "./dashboard";

const end = Date.parse("2026-11-26T12:00:00Z");
const at = (minutesAgo: number, outcome: string, principal = "user:a", resource = "agent:x") => ({
  time: new Date(end - minutesAgo * 60_000).toISOString(),
  outcome,
  principal,
  resource,
});

describe("dashboard figures", () => {
  it("bucket decisions by time and outcome, ignoring ones outside the window", () => {
    const buckets = bucketByOutcome(
      [at(5, "allow"), at(5, "deny"), at(50, "allow"), at(59.9, "require_approval"), at(61, "allow"), at(-1, "deny")],
      end,
      60 * 60_000,
      6,
    );
    expect(buckets).toHaveLength(6);
    expect(buckets[5].counts).toEqual({ allow: 1, deny: 1 });
    expect(buckets[1].counts).toEqual({ allow: 1 });
    expect(buckets[0].counts).toEqual({ require_approval: 1 });
    expect(buckets.reduce((n, b) => n + b.total, 0)).toBe(4);
    expect(buckets[0].start).toBe(end - 60 * 60_000);
  });

  it("rank the most denied principals and resources", () => {
    const decisions = [
      at(1, "deny", "user:b", "agent:shell"),
      at(2, "deny", "user:a", "agent:shell"),
      at(3, "deny", "user:b", "agent:db"),
      at(4, "allow", "user:c", "agent:db"),
    ];
    expect(topDenied(decisions, "principal")).toEqual([
      { key: "user:b", count: 2 },
      { key: "user:a", count: 1 },
    ]);
    expect(topDenied(decisions, "resource", 1)).toEqual([{ key: "agent:shell", count: 2 }]);
    expect(outcomeTotals(decisions)).toEqual({ deny: 3, allow: 1 });
  });

  it("scale bars to the tallest", () => {
    expect(scale(5, 10)).toBe(50);
    expect(scale(0, 0)).toBe(0);
  });
});
