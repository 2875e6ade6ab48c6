// Starting points for the policy editor, in the documented formats (CONTRACTS.md).
export const TEMPLATES: Record<string, string> = {
  RolePolicy: `apiVersion: kaizen.studio/v1
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
    - name: agent-admin
      inherits: [agent-user]
      permissions: [{resource: "agent:*", actions: [create, update, delete, deploy]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
`,
  RegoPolicy: `apiVersion: kaizen.studio/v1
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name == "shell"
`,
  BudgetPolicy: `apiVersion: kaizen.studio/v1
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {scope: "team:research", metric: cost_usd, limit: 500, soft_limit: 400, period: month}
`,
  PolicyTest: `apiVersion: kaizen.studio/v1
kind: PolicyTest
metadata: {name: agent-roles-test}
spec:
  cases:
    - name: alice may invoke
      input:
        principal: {id: "user:alice@example.com", type: user, roles: [agent-user]}
        action: invoke
        resource: {type: agent, id: "agent:support-bot"}
        channel: api
      expect: {outcome: allow}
`,
};
