// The decision explorer's filters: kept in the page's URL (shareable, survive a reload) and
// turned into the API's query string.

export const OUTCOMES = ["allow", "deny", "require_approval"] as const;
export const CHANNELS = ["api", "cli", "mcp"] as const;

export interface DecisionFilters {
  outcome: string;
  principal: string;
  action: string;
  resource: string;
  reason: string;
  channel: string;
  since: string; // datetime-local text in the browser's zone, "" for none
  until: string;
}

export const FILTER_KEYS = ["outcome", "principal", "action", "resource", "reason", "channel", "since", "until"] as const;

export const emptyFilters: DecisionFilters = {
  outcome: "",
  principal: "",
  action: "",
  resource: "",
  reason: "",
  channel: "",
  since: "",
  until: "",
};

export function filtersFromSearch(search: URLSearchParams): DecisionFilters {
  const filters = { ...emptyFilters };
  for (const key of FILTER_KEYS) filters[key] = search.get(key)?.trim() ?? "";
  if (!(OUTCOMES as readonly string[]).includes(filters.outcome)) filters.outcome = "";
  if (!(CHANNELS as readonly string[]).includes(filters.channel)) filters.channel = "";
  return filters;
}

/** The filters as page search params: only the ones set, in a stable order. */
export function filtersToSearch(filters: DecisionFilters, keep?: URLSearchParams): URLSearchParams {
  const search = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const value = filters[key].trim();
    if (value) search.set(key, value);
  }
  const decision = keep?.get("decision");
  if (decision) search.set("decision", decision);
  return search;
}

/** A datetime-local value ("2026-11-26T10:30") as an RFC 3339 instant, or null. */
export function localToIso(value: string): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export interface FilterProblem {
  field: keyof DecisionFilters;
  message: string;
}

/** What can be told before asking the server: unreadable or inverted time ranges. */
export function checkFilters(filters: DecisionFilters): FilterProblem[] {
  const problems: FilterProblem[] = [];
  const since = localToIso(filters.since);
  const until = localToIso(filters.until);
  if (filters.since && !since) problems.push({ field: "since", message: "not a date and time" });
  if (filters.until && !until) problems.push({ field: "until", message: "not a date and time" });
  if (since && until && since > until) problems.push({ field: "until", message: "must be after “From”" });
  return problems;
}

/** The API query parameters for the filters (times as RFC 3339). */
export function apiParams(filters: DecisionFilters): Record<string, string> {
  const params: Record<string, string> = {};
  for (const key of ["outcome", "principal", "action", "resource", "reason", "channel"] as const) {
    const value = filters[key].trim();
    if (value) params[key] = value;
  }
  const since = localToIso(filters.since);
  const until = localToIso(filters.until);
  if (since) params.since = since;
  if (until) params.until = until;
  return params;
}

export function activeFilterCount(filters: DecisionFilters): number {
  return FILTER_KEYS.filter((key) => filters[key].trim() !== "").length;
}

/** The reasons of a logged decision result, whatever their shape. */
export function reasonsOf(result: Record<string, unknown>): string[] {
  const reasons = result.reasons;
  if (!Array.isArray(reasons)) return [];
  return reasons.map((r) => (typeof r === "string" ? r : JSON.stringify(r)));
}
