// What the navigation offers, by the permissions of the signed-in principal (GET /me).
export interface NavItem {
  to: string;
  label: string;
  permission: string;
  section: "Overview" | "Runtime" | "Policies" | "Audit" | "Admin";
}

export const NAV: NavItem[] = [
  { to: "/dashboard", label: "Dashboard", permission: "organization:read", section: "Overview" },
  { to: "/usage", label: "Usage and budgets", permission: "budgets:read", section: "Overview" },
  { to: "/policies", label: "Policies", permission: "policies:read", section: "Policies" },
  { to: "/simulate", label: "Simulate", permission: "policies:simulate", section: "Policies" },
  { to: "/bundles", label: "Bundle revisions", permission: "bundles:read", section: "Policies" },
  { to: "/agents", label: "Agents", permission: "agents:read", section: "Runtime" },
  { to: "/pipelines", label: "Pipelines", permission: "pipelines:read", section: "Runtime" },
  { to: "/gateways", label: "Gateways", permission: "gateways:read", section: "Runtime" },
  { to: "/connectors", label: "Connectors", permission: "connectors:read", section: "Runtime" },
  { to: "/executions", label: "Executions", permission: "executions:read", section: "Runtime" },
  { to: "/mcp-clients", label: "MCP clients", permission: "organization:read", section: "Runtime" },
  { to: "/decisions", label: "Decisions", permission: "decisions:read", section: "Audit" },
  { to: "/approvals", label: "Approvals", permission: "approvals:read", section: "Audit" },
  { to: "/admin/members", label: "Members", permission: "users:read", section: "Admin" },
  { to: "/admin/teams", label: "Teams", permission: "teams:read", section: "Admin" },
  { to: "/admin/api-keys", label: "API keys", permission: "api_keys:read", section: "Admin" },
  { to: "/admin/workspaces", label: "Workspaces", permission: "workspaces:read", section: "Admin" },
  { to: "/admin/sso", label: "Sign-in and SSO", permission: "sso:read", section: "Admin" },
  { to: "/admin/webhooks", label: "Webhooks", permission: "webhooks:read", section: "Admin" },
  { to: "/admin/secrets", label: "Provider keys", permission: "secrets:read", section: "Admin" },
  { to: "/admin/audit", label: "Audit events", permission: "audit_events:read", section: "Admin" },
  { to: "/billing", label: "Plan and billing", permission: "billing:read", section: "Admin" },
];

export function visibleNav(permissions: readonly string[]): NavItem[] {
  const granted = new Set(permissions);
  return NAV.filter((item) => granted.has(item.permission));
}

export function homePath(permissions: readonly string[]): string {
  return visibleNav(permissions)[0]?.to ?? "/account";
}
