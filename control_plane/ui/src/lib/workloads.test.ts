import { describe, expect, it } from "vitest";
import {
  PATTERNS,
  agentFormOf,
  applyAgentForm,
  applyPipelineForm,
  newAgent,
  parseRoutes,
  parseYaml,
  pipelineGraph,
  roleValuesOf,
  toYaml,
} from "./workloads";

describe("agent designer", () => {
  it("writes the form as an Agent document and reads it back", () => {
    const doc = applyAgentForm({}, {
      ...newAgent,
      name: "support-bot",
      provider: "openai",
      model: "gpt-4o-mini",
      temperature: "0.2",
      toolAgents: "researcher, ",
      costEstimate: "0.002",
    });
    expect(doc).toMatchObject({
      apiVersion: "kaizen.studio/v1",
      kind: "Agent",
      metadata: { name: "support-bot" },
      spec: {
        model: { provider: "openai", name: "gpt-4o-mini", parameters: { temperature: 0.2 } },
        tools: [{ agent: "researcher" }],
        cost_estimate_usd: 0.002,
      },
    });
    const back = parseYaml(toYaml(doc));
    expect(back.error).toBeNull();
    expect(agentFormOf(back.doc!)).toMatchObject({ name: "support-bot", temperature: "0.2", toolAgents: "researcher" });
  });

  it("keeps what the form does not show (HTTP tools, limits)", () => {
    const { doc } = parseYaml(
      "kind: Agent\nmetadata: {name: a}\nspec:\n  model: {provider: demo, name: demo}\n  tools:\n    - agent: b\n    - http: {name: w, url: 'https://x'}\n  limits: {max_steps: 3}\n",
    );
    const next = applyAgentForm(doc!, { ...agentFormOf(doc!), toolAgents: "" });
    expect(next.spec).toMatchObject({ tools: [{ http: { name: "w", url: "https://x" } }], limits: { max_steps: 3 } });
  });

  it("says where YAML is broken", () => {
    const { doc, error } = parseYaml("kind: Agent\nmetadata: {name: [x\n");
    expect(doc).toBeNull();
    expect(error).toMatch(/^line \d+, column \d+: /);
    expect(parseYaml("- a\n- b\n").error).toBe("The document must be a mapping.");
  });
});

describe("pipeline designer", () => {
  it("offers the nine patterns", () => {
    expect(PATTERNS).toHaveLength(9);
  });

  it("writes roles per pattern and reads them back", () => {
    const doc = applyPipelineForm({ spec: { limits: { max_steps: 4 }, agents: ["stale"] } }, "desk", "", "router", {
      router: "triager",
      routes: "billing: accountant\nbroken line\ntech: engineer",
      default: "",
    });
    expect(doc.spec).toEqual({
      limits: { max_steps: 4 },
      pattern: "router",
      router: "triager",
      routes: { billing: "accountant", tech: "engineer" },
    });
    expect(roleValuesOf(doc.spec as Record<string, unknown>).routes).toBe("billing: accountant\ntech: engineer");
    expect(parseRoutes("a:b\n:c\nd: ")).toEqual({ a: "b" });
  });

  it("draws a sequential pipeline as a chain", () => {
    const { nodes, edges } = pipelineGraph({ pattern: "sequential", agents: ["a", "b", "a"] });
    expect(nodes.map((n) => n.label)).toEqual(["input", "a", "b", "a", "output"]);
    expect(edges.map((e) => `${e.source}>${e.target}`)).toEqual([
      "input>agent:a#0",
      "agent:a#0>agent:b#1",
      "agent:b#1>agent:a#2",
      "agent:a#2>output",
    ]);
  });

  it("draws a router's routes with their labels and the default dashed", () => {
    const { edges } = pipelineGraph({ pattern: "router", router: "r", routes: { billing: "acct" }, default: "gen" });
    expect(edges).toContainEqual(expect.objectContaining({ source: "router:r", target: "agent:acct", label: "billing" }));
    expect(edges).toContainEqual(expect.objectContaining({ target: "agent:gen", label: "default", dashed: true }));
    expect(edges.filter((e) => e.target === "output")).toHaveLength(2);
  });

  it("draws a supervisor delegating to workers and a debate ending at its judge", () => {
    const sw = pipelineGraph({ pattern: "supervisor_worker", supervisor: "boss", workers: ["x", "y"] });
    expect(sw.edges.filter((e) => e.source === "lead:boss" && e.label === "task")).toHaveLength(2);
    expect(sw.edges.filter((e) => e.target === "output").map((e) => e.source)).toEqual(["lead:boss"]);
    const debate = pipelineGraph({ pattern: "debate", debaters: ["pro", "con"], judge: "ref" });
    expect(debate.edges.filter((e) => e.target === "judge:ref")).toHaveLength(2);
    expect(debate.edges.find((e) => e.target === "output")?.source).toBe("judge:ref");
  });

  it("draws every pattern with an input and an output", () => {
    for (const pattern of PATTERNS) {
      const { nodes } = pipelineGraph({ pattern, agents: ["a"], debaters: ["a"], workers: ["a"] });
      expect(nodes[0].id).toBe("input");
      expect(nodes.at(-1)?.id).toBe("output");
    }
  });
});
