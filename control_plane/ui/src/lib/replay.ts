// Impact replay: the time window, progress, the report's order, and the publish gate's 409.
import { ApiError } from "../api/client";
import type { Replay, ReplayTransition } from "../api/types";

export const ACTIVE = new Set(["queued", "running"]);

/** `<input type="datetime-local">` value for a moment (local time, minutes). */
export function localInput(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export interface ReplayWindow {
  since: string;
  until?: string;
}

/** The request's window from the form's local times; null with the reason when it is wrong. */
export function replayWindow(since: string, until: string): { window: ReplayWindow } | { error: string; field: string } {
  const start = new Date(since);
  if (!since || Number.isNaN(start.getTime())) return { error: "choose when the window starts", field: "since" };
  if (!until) return { window: { since: start.toISOString() } };
  const end = new Date(until);
  if (Number.isNaN(end.getTime())) return { error: "not a date and time", field: "until" };
  if (end <= start) return { error: "must be after the start", field: "until" };
  return { window: { since: start.toISOString(), until: end.toISOString() } };
}

export function progressPercent(replay: Pick<Replay, "status" | "processed" | "total">): number {
  if (replay.status === "completed") return 100;
  if (!replay.total) return 0;
  return Math.min(100, Math.floor((replay.processed / replay.total) * 100));
}

/** Risky transitions first, then the most frequent. */
export function orderTransitions(transitions: readonly ReplayTransition[]): ReplayTransition[] {
  return [...transitions].sort((a, b) => Number(b.risky) - Number(a.risky) || b.count - a.count);
}

export function outcomeLabel(outcome: string): string {
  return outcome.replace("_", " ");
}

/** The rules responsible for a transition, from its examples' new (or old) side. */
export function responsibleRules(transition: ReplayTransition): string[] {
  const rules = new Set<string>();
  for (const example of transition.examples) {
    for (const rule of example.new.rules ?? []) rules.add(rule);
    if (!example.new.rules?.length) for (const rule of example.old.rules ?? []) rules.add(rule);
  }
  return [...rules];
}

/** True when a publish was refused by the replay gate rather than by failing tests. */
export function isGateRefusal(error: unknown): boolean {
  if (!(error instanceof ApiError) || error.status !== 409 || !Array.isArray(error.details)) return false;
  if (error.details.length === 0) return /replay/i.test(error.message);
  return error.details.some((d) => d && typeof d === "object" && (d as { field?: unknown }).field === "accept_replay");
}

/** An example's request in words. The report summarises inputs flat (`principal: "user:…"`);
 * a full decision input (`principal: {id}`) reads the same. */
export function describeRequest(input: Record<string, unknown>): string {
  const name = (value: unknown): string | null => {
    if (typeof value === "string") return value;
    if (value && typeof value === "object" && typeof (value as { id?: unknown; name?: unknown }).id === "string") return (value as { id: string }).id;
    if (value && typeof value === "object" && typeof (value as { name?: unknown }).name === "string") return (value as { name: string }).name;
    return null;
  };
  const tool = name(input.tool);
  const workspace = typeof input.workspace === "string" ? ` in ${input.workspace}` : "";
  const channel = typeof input.channel === "string" ? ` via ${input.channel}` : "";
  return `${name(input.principal) ?? "?"} ${name(input.action) ?? "?"} ${name(input.resource) ?? "?"}${workspace}${channel}${tool ? ` (tool ${tool})` : ""}`;
}
