import { describe, expect, it } from "vitest";
import { roleMatrix } from "./rolematrix";
import { TEMPLATES } from "./templates";

describe("roleMatrix", () => {
  it("resolves inherited permissions and keeps bindings", () => {
    const m = roleMatrix(TEMPLATES.RolePolicy + "---\n" + TEMPLATES.RegoPolicy);
    expect(m.roles).toEqual(["agent-user", "agent-admin"]);
    expect(m.permissions.map((p) => p.key)).toContain("agent:* deploy");
    expect(m.grants["agent-admin"]["agent:* invoke"]).toEqual({ direct: false, via: "agent-user" });
    expect(m.grants["agent-admin"]["agent:* deploy"]).toEqual({ direct: true });
    expect(m.grants["agent-user"]["agent:* deploy"]).toBeUndefined();
    expect(m.bindings).toEqual([{ subject: "user:alice@example.com", role: "agent-user" }]);
    expect(m.problems).toEqual([]);
  });

  it("reports cycles and unknown roles instead of looping", () => {
    const m = roleMatrix(`kind: RolePolicy
spec:
  roles:
    - {name: a, inherits: [b], permissions: [{resource: "x:*", actions: [read]}]}
    - {name: b, inherits: [a, ghost]}
`);
    expect(m.grants.b["x:* read"]).toEqual({ direct: false, via: "a" });
    expect(m.problems.some((p) => p.includes("cycle"))).toBe(true);
    expect(m.problems.some((p) => p.includes("ghost"))).toBe(true);
  });

  it("survives YAML errors", () => {
    const m = roleMatrix("kind: RolePolicy\nspec: {roles: [\n");
    expect(m.roles).toEqual([]);
    expect(m.problems.length).toBeGreaterThan(0);
  });
});
