"""Helpers of the plan tests: put an organisation on a plan as the operator's CLI does."""

from __future__ import annotations

import uuid

import httpx

from control_plane.services.audit import Actor
from control_plane.services.plans import changes
from tests.conftest import PASSWORD, Account, Stack

OPERATOR = Actor("system", None, "test operator", None, None)


async def put_on(
    stack: Stack, organization_id: str, plan: str, **overrides: int | None
) -> changes.PlanChange:
    org = uuid.UUID(organization_id)
    async with stack.db.session(org) as session:
        return await changes.set_plan(
            session,
            org,
            OPERATOR,
            plan,
            overrides,
            keys=stack.app.state.keys,
            issuer=stack.settings.issuer,
        )


def agent(name: str) -> str:
    return (
        f"kind: Agent\nmetadata: {{name: {name}}}\nspec:\n"
        "  model: {provider: demo, name: demo}\n  system_prompt: You help.\n"
    )


async def add_user(
    client: httpx.AsyncClient, owner: Account, role: str = "viewer"
) -> httpx.Response:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    return await client.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "role": role},
        headers=owner.headers,
    )


async def add_gateway(client: httpx.AsyncClient, owner: Account) -> httpx.Response:
    return await client.post(
        "/api/v1/gateways",
        json={
            "name": f"gw-{uuid.uuid4().hex[:6]}",
            "environment": "prod",
            "url": "http://gw.test:8080",
        },
        headers=owner.headers,
    )


async def add_agents(client: httpx.AsyncClient, owner: Account, *names: str) -> httpx.Response:
    source = "---\n".join(agent(name) for name in names)
    return await client.post("/api/v1/agents", json={"source": source}, headers=owner.headers)
