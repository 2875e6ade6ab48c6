import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import type { ReplayTransition } from "../api/types";
import { describeRequest, isGateRefusal, localInput, orderTransitions, progressPercent, replayWindow, responsibleRules } from "./replay";

const side = (outcome: string, rules: string[] = []) => ({ outcome, reasons: [], rules });
const transition = (from: string, to: string, count: number, risky: boolean, rules: string[] = []): ReplayTransition => ({
  from, to, count, risky,
  examples: [{ decision_id: `${from}-${to}`, time: "2026-01-01T00:00:00Z", input: {}, old: side(from), new: side(to, rules) }],
});

describe("impact replay", () => {
  it("checks the window and sends it in UTC", () => {
    const since = localInput(new Date(2026, 0, 2, 3, 4));
    expect(since).toBe("2026-01-02T03:04");
    const ok = replayWindow(since, "");
    expect(ok).toEqual({ window: { since: new Date(2026, 0, 2, 3, 4).toISOString() } });
    expect(replayWindow("", "")).toMatchObject({ field: "since" });
    expect(replayWindow(since, "2026-01-01T00:00")).toMatchObject({ field: "until", error: "must be after the start" });
  });
  it("reports progress", () => {
    expect(progressPercent({ status: "running", processed: 50, total: 200 })).toBe(25);
    expect(progressPercent({ status: "queued", processed: 0, total: 0 })).toBe(0);
    expect(progressPercent({ status: "completed", processed: 0, total: 0 })).toBe(100);
  });
  it("puts risky transitions first, then the frequent ones", () => {
    const ordered = orderTransitions([
      transition("deny", "allow", 1, true),
      transition("require_approval", "allow", 9, false),
      transition("allow", "deny", 4, true),
    ]);
    expect(ordered.map((t) => `${t.from}->${t.to}`)).toEqual(["allow->deny", "deny->allow", "require_approval->allow"]);
  });
  it("names the rules responsible", () => {
    expect(responsibleRules(transition("allow", "deny", 1, true, ["data.kaizen.abac.guardrails.deny"]))).toEqual([
      "data.kaizen.abac.guardrails.deny",
    ]);
  });
  it("tells the publish gate's refusal from failing tests", () => {
    const gate = new ApiError(409, "conflict", "publishing requires a completed replay", [{ field: "accept_replay", risky: 2 }]);
    const noneYet = new ApiError(409, "conflict", "publishing requires a completed replay of exactly these drafts", []);
    const tests = new ApiError(409, "conflict", "2 policy tests failed", [{ test: "t", case: "c" }]);
    expect(isGateRefusal(gate)).toBe(true);
    expect(isGateRefusal(noneYet)).toBe(true);
    expect(isGateRefusal(tests)).toBe(false);
    expect(isGateRefusal(new Error("x"))).toBe(false);
  });
  it("describes an example's request, flat or nested", () => {
    const flat = { principal: "user:a@x.com", action: "invoke", resource: "agent:bot", workspace: "prod", channel: "mcp", tool: "shell" };
    expect(describeRequest(flat)).toBe("user:a@x.com invoke agent:bot in prod via mcp (tool shell)");
    const nested = { principal: { id: "user:a@x.com" }, action: "invoke", resource: { id: "agent:bot" }, tool: { name: "search" } };
    expect(describeRequest(nested)).toBe("user:a@x.com invoke agent:bot (tool search)");
    expect(describeRequest({})).toBe("? ? ?");
  });
});
