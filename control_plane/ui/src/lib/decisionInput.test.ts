import { describe, expect, it } from "vitest";
import { defaultForm, mergeDecisionInput } from "./decisionInput";

describe("mergeDecisionInput", () => {
  it("builds a contract-shaped decision input from the form", () => {
    const input = mergeDecisionInput("", { ...defaultForm, teams: "sre, research", tool: "shell", channel: "mcp" });
    expect(input).toMatchObject({
      principal: { id: "user:alice@example.com", type: "user", roles: ["agent-user"], teams: ["sre", "research"] },
      action: "invoke",
      resource: { type: "agent", id: "agent:support-bot", workspace: "prod" },
      channel: "mcp",
      tool: { name: "shell", arguments: {} },
    });
  });

  it("keeps what the user typed into the JSON beyond the form", () => {
    const current = JSON.stringify({
      context: { environment: "prod" },
      principal: { attributes: { level: 3 } },
      tool: { name: "old", arguments: { q: 1 } },
    });
    const input = mergeDecisionInput(current, { ...defaultForm, workspace: "", tool: "search" });
    expect(input.context).toEqual({ environment: "prod" });
    expect((input.principal as { attributes: unknown }).attributes).toEqual({ level: 3 });
    expect(input.tool).toEqual({ name: "search", arguments: { q: 1 } });
    expect(input.resource).not.toHaveProperty("workspace");
  });

  it("drops the tool when the form has none", () => {
    expect(mergeDecisionInput(JSON.stringify({ tool: { name: "x" } }), defaultForm)).not.toHaveProperty("tool");
  });
});
