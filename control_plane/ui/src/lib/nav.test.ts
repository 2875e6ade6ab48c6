import { describe, expect, it } from "vitest";
import { homePath, visibleNav } from "./nav";
import { classifyDiff } from "./diff";

describe("navigation by permission", () => {
  it("shows a viewer only what it may read", () => {
    const labels = visibleNav(["policies:read", "policies:simulate", "bundles:read", "teams:read"]).map((i) => i.label);
    expect(labels).toEqual(["Policies", "Simulate", "Bundle revisions", "Teams"]);
  });
  it("sends a principal without pages to its account", () => {
    expect(homePath([])).toBe("/account");
    expect(homePath(["audit_events:read"])).toBe("/admin/audit");
    expect(homePath(["decisions:read", "audit_events:read"])).toBe("/decisions");
    expect(homePath(["organization:read", "policies:read"])).toBe("/dashboard");
  });
  it("shows identity and admin pages only to roles that may read them", () => {
    const admin = visibleNav(["users:read", "sso:read", "webhooks:read", "secrets:read", "audit_events:read"]).map((i) => i.label);
    expect(admin).toEqual(["Members", "Sign-in and SSO", "Webhooks", "Provider keys", "Audit events"]);
    // A viewer's permissions (builtin_roles.yaml) reach none of them.
    const viewer = ["organization:read", "users:read", "teams:read", "policies:read", "policies:simulate"];
    expect(visibleNav(viewer).some((i) => ["/admin/sso", "/admin/webhooks", "/admin/secrets"].includes(i.to))).toBe(false);
  });
  it("groups the runtime and audit pages by role", () => {
    const operator = visibleNav(["gateways:read", "executions:read", "policies:read", "agents:read"]).map((i) => i.label);
    expect(operator).toEqual(["Policies", "Agents", "Gateways", "Executions"]);
    expect(visibleNav(["decisions:read"]).map((i) => i.label)).toEqual(["Decisions"]);
  });
});

describe("usage navigation", () => {
  it("offers usage and budgets only to roles that may read budgets", () => {
    // owner, admin and security_admin hold budgets:read (builtin_roles.yaml); a viewer does not.
    expect(visibleNav(["organization:read", "budgets:read"]).map((i) => i.to)).toEqual([
      "/dashboard",
      "/usage",
      "/mcp-clients",
    ]);
    expect(visibleNav(["organization:read", "policies:read"]).some((i) => i.to === "/usage")).toBe(false);
  });
});

describe("MCP clients navigation", () => {
  it("is offered to every member (each role reads the organisation)", () => {
    expect(visibleNav(["organization:read"]).map((i) => i.to)).toContain("/mcp-clients");
  });
});

describe("classifyDiff", () => {
  it("classes unified diff lines", () => {
    const kinds = classifyDiff("--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same\n").map((l) => l.kind);
    expect(kinds).toEqual(["header", "header", "hunk", "remove", "add", "context"]);
  });
});
