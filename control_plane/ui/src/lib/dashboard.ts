// The dashboard's figures, computed from decisions (a page of the newest ones) when the
// control plane has no aggregates for them.

export interface DecisionPoint {
  time: string;
  outcome: string;
  principal?: string | null;
  resource?: string | null;
}

export interface Bucket {
  start: number; // epoch ms
  counts: Record<string, number>;
  total: number;
}

/** Decisions per time bucket and outcome, `buckets` equal slices ending at `end`. */
export function bucketByOutcome(
  decisions: readonly DecisionPoint[],
  end: number,
  spanMs: number,
  buckets: number,
): Bucket[] {
  const width = spanMs / buckets;
  const start = end - spanMs;
  const out: Bucket[] = Array.from({ length: buckets }, (_, i) => ({
    start: start + i * width,
    counts: {},
    total: 0,
  }));
  for (const decision of decisions) {
    const time = Date.parse(decision.time);
    if (Number.isNaN(time) || time < start || time > end) continue;
    const index = Math.min(buckets - 1, Math.floor((time - start) / width));
    const bucket = out[index];
    bucket.counts[decision.outcome] = (bucket.counts[decision.outcome] ?? 0) + 1;
    bucket.total += 1;
  }
  return out;
}

export interface Ranked {
  key: string;
  count: number;
}

/** The `limit` most frequent values of `pick` among denied decisions, ties by name. */
export function topDenied(
  decisions: readonly DecisionPoint[],
  pick: "principal" | "resource",
  limit = 5,
): Ranked[] {
  const counts = new Map<string, number>();
  for (const decision of decisions) {
    const key = decision[pick];
    if (decision.outcome !== "deny" || !key) continue;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts]
    .map(([key, count]) => ({ key, count }))
    .sort((a, b) => b.count - a.count || a.key.localeCompare(b.key))
    .slice(0, limit);
}

export function outcomeTotals(decisions: readonly DecisionPoint[]): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const d of decisions) totals[d.outcome] = (totals[d.outcome] ?? 0) + 1;
  return totals;
}

/** A bar's height in percent of the tallest bucket (0 when all are empty). */
export function scale(value: number, max: number): number {
  return max > 0 ? Math.round((value / max) * 1000) / 10 : 0;
}
