"""The demo organisation of `kaizen-studio up`: created on first run through the public API
like any client (an owner, a published policy, a gateway with its credential, two agents
deployed to it, an API key), saved to `$KAIZEN_HOME/demo.json` (mode 0600), and replaced
when the saved one no longer matches the database."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kaizen_studio.errors import UpError

DEMO_FILE = "demo.json"
DEMO_EMAIL = "owner@demo.example.com"
DEMO_POLICY = """\
kind: RolePolicy
metadata: {name: agent-access}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:*", actions: [invoke]}
        - {resource: "pipeline:*", actions: [run]}
        - {resource: "mcp:*", actions: [connect, list]}
  bindings:
    - {subject: "user:%(email)s", role: agent-user}
    - {subject: "apikey:demo-cli", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "restricted-bot is only for the sre team" if {
      input.resource.id == "agent:restricted-bot"
      not "sre" in input.principal.teams
    }
---
kind: BudgetPolicy
metadata: {name: demo-spend}
spec:
  budgets:
    - {name: demo-daily, scope: org, metric: executions, limit: 1000, period: day}
"""
DEMO_AGENTS = """\
kind: Agent
metadata: {name: demo-bot, description: "Echoes what you send, through the offline demo provider"}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You are the Kaizen Studio demo agent.
  cost_estimate_usd: 0.001
---
kind: Agent
metadata: {name: restricted-bot, description: Only the sre team may call it (see guardrails)}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You are restricted.
"""


@dataclass(frozen=True)
class Demo:
    organization_id: str
    email: str
    password: str
    api_key: str
    gateway_id: str
    gateway_credential: str


def _load_demo(path: Path) -> Demo | None:
    try:
        return Demo(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise UpError(f"{path} is unreadable ({exc}); move it away to create a new demo") from None


def _save_demo(path: Path, demo: Demo) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(demo.__dict__, handle, indent=2)


def _still_valid(control_plane: str, demo: Demo) -> bool:
    """Whether the saved demo's gateway credential is still this control plane's."""
    answer = httpx.get(
        f"{control_plane}/api/v1/gateways/self",
        headers={"Authorization": f"Bearer {demo.gateway_credential}"},
        timeout=10,
    )
    return answer.status_code == 200


def create_demo(control_plane: str, gateway_url: str) -> Demo:
    """The demo organisation, made through the public API as any client would."""
    with httpx.Client(base_url=control_plane, timeout=60) as http:

        def call(method: str, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = http.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                raise UpError(f"creating the demo: {method} {path} → {response.text[:300]}")
            return dict(response.json())

        password = secrets.token_urlsafe(12)
        owner = call(
            "POST",
            "/api/v1/auth/signup",
            {"email": DEMO_EMAIL, "password": password, "organization": "Demo"},
        )
        token = owner["access_token"]
        call("POST", "/api/v1/policies", {"source": DEMO_POLICY % {"email": DEMO_EMAIL}}, token)
        call("POST", "/api/v1/policies/publish", {}, token)
        key = call("POST", "/api/v1/api-keys", {"name": "demo-cli", "role": "developer"}, token)
        gateway = call(
            "POST",
            "/api/v1/gateways",
            {"name": "local", "environment": "dev", "url": gateway_url},
            token,
        )
        call("POST", "/api/v1/agents", {"source": DEMO_AGENTS}, token)
        for name in ("demo-bot", "restricted-bot"):
            deployment = {"gateway_id": gateway["id"], "kind": "agent", "name": name}
            call("POST", "/api/v1/deployments", deployment, token)
        return Demo(
            organization_id=owner["organization_id"],
            email=DEMO_EMAIL,
            password=password,
            api_key=key["key"],
            gateway_id=gateway["id"],
            gateway_credential=gateway["credential"],
        )


def demo_for(control_plane: str, gateway_url: str, home: Path) -> tuple[Demo, bool]:
    """The saved demo if this control plane still knows it, else a new one (saved); and
    whether it is new (its secrets are then shown once)."""
    demo = _load_demo(home / DEMO_FILE)
    if demo is not None and not _still_valid(control_plane, demo):
        stale = home / f"{DEMO_FILE}.stale"
        (home / DEMO_FILE).replace(stale)
        # The old gateway's bundles and unshipped decisions belong to an organisation
        # this database no longer has: the new gateway must not serve or ship them.
        for state in ("sidecar", "gateway"):
            shutil.rmtree(home / state, ignore_errors=True)
        print(f"the saved demo no longer matches this database; moved it to {stale}")
        demo = None
    if demo is not None:
        return demo, False
    demo = create_demo(control_plane, gateway_url)
    _save_demo(home / DEMO_FILE, demo)
    return demo, True
