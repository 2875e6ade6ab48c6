// Webhook events as the API knows them, with what each means to a subscriber.
export const WEBHOOK_EVENTS = [
  ["approval.requested", "A call is held for approval"],
  ["approval.decided", "An approver approved or denied a held call"],
  ["budget.soft_limit", "A budget passed its soft limit"],
  ["budget.hard_limit", "A budget reached its hard limit"],
  ["plan.quota_warning", "90% of the plan's monthly executions used"],
  ["security.repeated_denials", "A principal is denied again and again"],
  ["security.bundle_verification_failed", "A sidecar refused a policy bundle"],
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number][0];

export function toggle<T>(list: readonly T[], item: T, on: boolean): T[] {
  const without = list.filter((x) => x !== item);
  return on ? [...without, item] : without;
}

/** A delivery's outcome in words: "delivered (200)", "failed after 5 attempts: timeout". */
export function deliveryOutcome(d: {
  status: string;
  attempts: number;
  last_status_code?: number | null;
  last_error?: string | null;
}): string {
  const code = d.last_status_code ? ` (HTTP ${d.last_status_code})` : "";
  if (d.status === "delivered") return `delivered${code}`;
  const tries = `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`;
  const why = d.last_error ? `: ${d.last_error}` : "";
  if (d.status === "failed") return `failed after ${tries}${code}${why}`;
  return d.attempts ? `retrying, ${tries} so far${code}${why}` : "pending";
}
