"""Fixtures for the policy package: the CONTRACTS.md example set, keys, decision inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.decide import DecisionEngine

EXAMPLE = """\
apiVersion: kaizen.studio/v1
kind: RolePolicy            # RBAC, compiled to Casbin (RBAC with domains)
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
    - {subject: "team:sre", role: agent-admin, workspace: prod}
    - {subject: "apikey:ci-bot", role: agent-user}
---
kind: RegoPolicy            # ABAC: Rego v1; package must start with kaizen.abac
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name == "shell"
    require_approval contains "deploys to prod need approval" if {
      input.action == "deploy"
      input.resource.workspace == "prod"
    }
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {scope: "team:research", metric: cost_usd, limit: 500, soft_limit: 400, period: month}
    - {scope: "apikey:ci-bot", metric: executions, limit: 1000, period: day}
"""

ORG = "org-1"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def decision_input(
    principal: str = "user:alice@example.com",
    action: str = "invoke",
    resource: str = "agent:support-bot",
    *,
    workspace: str | None = None,
    teams: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
    tool: str | None = None,
    cost: float | None = None,
    organization: str | None = ORG,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "principal": {
            "id": principal,
            "type": principal.split(":", 1)[0],
            "roles": list(roles),
            "teams": list(teams),
            "attributes": {},
        },
        "action": action,
        "resource": {
            "type": resource.split(":", 1)[0],
            "id": resource,
            "workspace": workspace,
            "attributes": {},
        },
        "channel": "mcp" if tool else "api",
        "request": {"method": "POST", "path": "/v1/agents/x/invoke", "source_ip": "10.0.0.1"},
        "context": {"time": "2026-11-26T12:00:00Z", "environment": "prod"},
    }
    if organization is not None:
        value["principal"]["organization"] = organization
    if tool is not None:
        value["tool"] = {"name": tool, "arguments": {}}
    if cost is not None:
        value["context"]["estimated_cost_usd"] = cost
    return value


def engine_for(source: str, agents: dict[str, Any] | None = None, **options: Any) -> DecisionEngine:
    policy_set = PolicySet.from_sources([("policy.yaml", source)], builtin_roles=False)
    compiled = compile_policy(policy_set, CompileContext(ORG, agents=agents or {}))
    return DecisionEngine(compiled, clock=lambda: NOW, **options)


@pytest.fixture(scope="session")
def example_set() -> PolicySet:
    return PolicySet.from_sources([("example.yaml", EXAMPLE)])


@pytest.fixture(scope="session")
def example_compiled(example_set: PolicySet) -> CompiledPolicy:
    return compile_policy(example_set, CompileContext(ORG))


@pytest.fixture
def engine(example_compiled: CompiledPolicy) -> DecisionEngine:
    return DecisionEngine(example_compiled, clock=lambda: NOW)


@pytest.fixture(scope="session")
def signing_key() -> tuple[Any, dict[str, Any]]:
    pem, jwks = generate_ed25519("kaizen-1")
    return load_private_key(pem), jwks
