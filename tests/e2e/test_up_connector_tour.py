"""The README tour's data-connector step, for real: `kaizen-studio up` started as the README
says (loopback databases allowed, the connector's password in the gateway's environment),
a throw-away PostgreSQL database with two tables, and the steps of the tour over HTTP.

The model is the offline demo provider (`sql: <statement>` is its one question): its tool
call goes through the gateway's connector code and the sidecar's decision like any model's.
Asserted: the answer quotes the table's rows; after publishing a Rego deny of that table the
next call is a 403 naming it (polled; the time it took is printed, never asserted); and the
decision log shows the table and operation of each connector call.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import PostgresDatabases
from tests.e2e import sidecar_procs as procs
from tests.e2e.test_up import _demo_answers, _kaizen_studio, free_port, free_port_pair

SEED = (
    "CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(8, 2))",
    "INSERT INTO orders VALUES (1, 'ada', 10.50), (2, 'bob', 20.00)",
    "CREATE TABLE salaries (name text, salary int)",
    "INSERT INTO salaries VALUES ('ada', 100)",
)
# The tour's documents, as the README shows them.
GRANT = """\
kind: RolePolicy
metadata: {name: shop-readers}
spec:
  roles:
    - name: shop-reader
      permissions:
        - {resource: "connector:shop", actions: [read]}
  bindings:
    - {subject: "apikey:demo-cli", role: shop-reader}
"""
ANALYST = """\
kind: Agent
metadata: {name: analyst, description: Answers from the shop database}
spec:
  model: {provider: demo, name: demo}
  tools:
    - connector: {name: shop, operations: [sql.query]}
"""
CLOSE_ORDERS = """\
kind: RegoPolicy
metadata: {name: orders-closed}
spec:
  rego: |
    package kaizen.abac.orders_closed
    import rego.v1
    deny contains "orders are closed for audit" if {
      input.resource.attributes.object == "table:public.orders"
    }
"""
QUESTION = "sql: SELECT customer, total FROM orders ORDER BY id"


@pytest.fixture
async def shop(postgres_databases: PostgresDatabases) -> str:
    """A throw-away database with the tour's tables (dropped with the session's others)."""
    url = await postgres_databases.create(f"tour_{secrets.token_hex(3)}")
    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
    try:
        for statement in SEED:
            await connection.execute(statement)
    finally:
        await connection.close()
    return name


@pytest.fixture
def up_for_connectors(
    tmp_path: Path,
) -> Iterator[tuple[str, subprocess.Popen[str], str, str]]:
    """`up` as the README's connector step starts it; (control plane, process, Envoy, the
    connector password the gateway was given)."""
    port, envoy = free_port(), free_port_pair()
    password = f"tour-{secrets.token_urlsafe(12)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env.update(
        KAIZEN_HOME=str(tmp_path / "home"),
        KAIZEN_SIDECAR_GRPC_PORT=str(free_port()),
        KAIZEN_SIDECAR_HTTP_PORT=str(free_port()),
        KAIZEN_GATEWAY_PORT=str(free_port()),
        KAIZEN_ENVOY_PORT=str(envoy),
        KAIZEN_OUTBOUND_ALLOW_CIDRS="127.0.0.1/32",
        KAIZEN_SECRET_CONNECTOR_SHOP_PASSWORD=password,
    )
    process = subprocess.Popen(
        [_kaizen_studio(), "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process, f"http://127.0.0.1:{envoy}", password
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        if process.stdout:
            process.stdout.close()


def test_the_tour_answers_from_a_postgresql_table_and_a_published_deny_stops_it(
    up_for_connectors: tuple[str, subprocess.Popen[str], str, str],
    shop: str,
    tmp_path: Path,
) -> None:
    url, process, gateway, password = up_for_connectors
    demo, _ = _demo_answers(tmp_path / "home", gateway, process)
    key = {"Authorization": f"Bearer {demo['api_key']}"}

    def ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
        assert response.status_code == status, response.text
        return dict(response.json())

    with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as cp:
        login = {"email": demo["email"], "password": demo["password"]}
        token = cp.post("/auth/login", json=login).json()["access_token"]
        cp.headers["Authorization"] = f"Bearer {token}"

        ok(cp.post("/policies", json={"source": GRANT}))
        ok(cp.post("/policies/publish", json={}))
        connector = ok(
            cp.post(
                "/connectors",
                json={
                    "name": "shop",
                    "type": "postgresql",
                    "password": password,
                    "settings": {
                        "host": "127.0.0.1",
                        "database": shop,
                        "username": "postgres",
                        "tls": "disable",
                    },
                },
            )
        )
        tested = ok(cp.post(f"/connectors/{connector['id']}/test"), 200)
        assert tested["ok"] is True, tested
        ok(cp.post("/agents", json={"source": ANALYST}))
        local = cp.get("/gateways").json()["items"][0]["id"]
        ok(cp.post("/deployments", json={"gateway_id": local, "kind": "agent", "name": "analyst"}))

        def ask() -> httpx.Response:
            return httpx.post(
                f"{gateway}/v1/agents/analyst/invoke", json={"input": QUESTION}, headers=key
            )

        # The deployment reaches the gateway with the next bundle: ask until it serves it.
        answered = procs.eventually(
            lambda: (r := ask()).status_code == 200 and r, 60, "the analyst answering", poll=0.05
        )
        output = answered.json()["output"]
        assert "2 row(s) from public.orders" in output, output
        assert "customer=ada, total=10.50; customer=bob, total=20.00" in output, output

        ok(cp.post("/policies", json={"source": CLOSE_ORDERS}))
        published_at = time.monotonic()
        ok(cp.post("/policies/publish", json={}))
        denied = procs.eventually(
            lambda: (r := ask()).status_code == 403 and r,
            30,
            "orders denied after the publish",
            poll=0.05,
        )
        took = time.monotonic() - published_at
        print(f"\nthe deny of table:public.orders reached the sidecar {took:.2f} s after publish")
        message = denied.json()["error"]["message"]
        assert "table:public.orders" in message, message
        assert "orders are closed for audit" in message, message

        def logged() -> set[tuple[str, str, str]] | None:
            items = cp.get("/decisions", params={"resource": "connector:shop", "limit": 50}).json()[
                "items"
            ]
            seen = {
                (d["action"], d["input"]["resource"]["attributes"]["object"], d["outcome"])
                for d in items
            }
            return seen if {"allow", "deny"} <= {outcome for *_, outcome in seen} else None

        seen = procs.eventually(logged, 30, "both connector decisions in the log", poll=0.05)
        assert seen == {
            ("read", "table:public.orders", "allow"),
            ("read", "table:public.orders", "deny"),
        }
