// The dashboard's figures from GET /api/v1/decisions/aggregates.

export interface AggregateBucket {
  start: string;
  counts: Record<string, number>;
  total: number;
}

export interface Ranked {
  key: string;
  count: number;
}

export const WINDOWS = {
  "24h": { label: "Last 24 hours", ms: 24 * 3600_000, interval: "hour" },
  "7d": { label: "Last 7 days", ms: 7 * 86_400_000, interval: "day" },
  "30d": { label: "Last 30 days", ms: 30 * 86_400_000, interval: "day" },
} as const;
export type WindowKey = keyof typeof WINDOWS;

/** The aggregates query for a window ending at `now` (start rounded down to the minute). */
export function windowParams(window: WindowKey, now: number = Date.now()): { since: string; interval: string } {
  const since = Math.floor((now - WINDOWS[window].ms) / 60_000) * 60_000;
  return { since: new Date(since).toISOString(), interval: WINDOWS[window].interval };
}

/** Totals per key over all buckets, in the server's order of `keys` (most first). */
export function totalsByKey(keys: readonly string[], buckets: readonly AggregateBucket[]): Ranked[] {
  const totals = new Map<string, number>(keys.map((k) => [k, 0]));
  for (const bucket of buckets) {
    for (const [key, count] of Object.entries(bucket.counts)) totals.set(key, (totals.get(key) ?? 0) + count);
  }
  return [...totals].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
}

export const OUTCOME_ORDER = ["allow", "require_approval", "deny"] as const;

export interface BarSegment {
  outcome: string;
  count: number;
  percent: number; // of the tallest bucket
}

/** Stacked bars: each bucket's outcomes as heights relative to the busiest bucket. */
export function stackedBars(buckets: readonly AggregateBucket[]): { start: string; total: number; segments: BarSegment[] }[] {
  const max = buckets.reduce((m, b) => Math.max(m, b.total), 0);
  return buckets.map((b) => {
    const known = OUTCOME_ORDER.filter((o) => b.counts[o]);
    const other = b.total - known.reduce((n, o) => n + (b.counts[o] ?? 0), 0);
    const parts: [string, number][] = [...known.map((o) => [o, b.counts[o]] as [string, number]), ...(other > 0 ? [["other", other] as [string, number]] : [])];
    return {
      start: b.start,
      total: b.total,
      segments: parts.map(([outcome, count]) => ({ outcome, count, percent: scale(count, max) })),
    };
  });
}

/** A bar's height in percent of the tallest bucket (0 when all are empty). */
export function scale(value: number, max: number): number {
  return max > 0 ? Math.round((value / max) * 1000) / 10 : 0;
}

export function sumCounts(buckets: readonly AggregateBucket[]): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const b of buckets) for (const [k, v] of Object.entries(b.counts)) totals[k] = (totals[k] ?? 0) + v;
  return totals;
}
