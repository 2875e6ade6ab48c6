"""The control plane's built-in organisation roles, a RolePolicy every policy set starts from.

Kept in step with control_plane/services/builtin_roles.yaml (the control plane's copy; a
unit test compares the two). Embedded as text so the package needs no data files.
"""

from __future__ import annotations

from functools import cache

from policy.documents.parse import RolePolicy, parse_policy_source

BUILTIN_ROLES_NAME = "builtin-organization-roles"

BUILTIN_ROLES_YAML = """\
apiVersion: kaizen.studio/v1
kind: RolePolicy
metadata: {name: builtin-organization-roles}
spec:
  roles:
    - name: viewer
      permissions:
        - {resource: "organization:*", actions: [read]}
        - {resource: "users:*", actions: [read]}
        - {resource: "teams:*", actions: [read]}
        - {resource: "workspaces:*", actions: [read]}
        - {resource: "agents:*", actions: [read]}
        - {resource: "pipelines:*", actions: [read]}
        - {resource: "gateways:*", actions: [read]}
        - {resource: "deployments:*", actions: [read]}
        - {resource: "executions:*", actions: [read]}
        - {resource: "policies:*", actions: [read, simulate]}
        - {resource: "bundles:*", actions: [read]}
        - {resource: "connectors:*", actions: [read]}
    - name: auditor
      inherits: [viewer]
      permissions:
        - {resource: "audit_events:*", actions: [read, verify]}
        - {resource: "decisions:*", actions: [read, export]}
        - {resource: "approvals:*", actions: [read]}
    - name: developer
      inherits: [viewer]
      permissions:
        - {resource: "agents:*", actions: [create, update, delete]}
        - {resource: "pipelines:*", actions: [create, update, delete]}
        - {resource: "deployments:*", actions: [create, delete]}
        - {resource: "api_keys:*", actions: [read, create, delete]}
        - {resource: "secrets:*", actions: [read, create, delete]}
        - {resource: "connectors:*", actions: [create, update, delete, test]}
    - name: operator
      inherits: [viewer]
      permissions:
        - {resource: "gateways:*", actions: [create, update, delete]}
        - {resource: "deployments:*", actions: [create, delete]}
    - name: security_admin
      inherits: [auditor]
      permissions:
        - {resource: "policies:*", actions: [create, update, delete, publish]}
        - {resource: "budgets:*", actions: [read, create, update, delete]}
        - {resource: "approvals:*", actions: [decide]}
    - name: admin
      inherits: [security_admin, developer, operator]
      permissions:
        - {resource: "users:*", actions: [create, update, delete]}
        - {resource: "teams:*", actions: [create, update, delete]}
        - {resource: "workspaces:*", actions: [create, update, delete]}
        - {resource: "api_keys:*", actions: [read, create, delete]}
        - {resource: "webhooks:*", actions: [read, create, update, delete]}
        - {resource: "sso:*", actions: [read, create, update, delete]}
        - {resource: "oauth_clients:*", actions: [read, update]}
        - {resource: "organization:*", actions: [configure_mfa]}
        - {resource: "billing:*", actions: [read, manage]}
    - name: owner
      inherits: [admin]
      permissions:
        - {resource: "organization:*", actions: [update, delete]}
        - {resource: "users:*", actions: [grant_owner]}
"""


@cache
def builtin_role_policy() -> RolePolicy:
    (document,) = parse_policy_source(BUILTIN_ROLES_YAML, "<builtin roles>")
    if not isinstance(document, RolePolicy):
        raise TypeError("the built-in roles must be a RolePolicy")
    return document
