"""One decision: RBAC → ABAC (Rego) → budgets, its input checks and caches, model prices."""
