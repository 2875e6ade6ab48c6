"""`/api/v1/connectors`: versions, a write-only password, audit, tenancy, the outbound guard
and a test connection against the real PostgreSQL and MariaDB of this machine."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import httpx
import pytest

from tests.conftest import Account, member, signup
from tests.integration.connector_support import (
    SeededDatabase,
    seeded_mariadb,
    seeded_postgres,
)

__all__ = ["seeded_mariadb", "seeded_postgres"]  # module fixtures, used by name
SETTINGS = {"host": "127.0.0.1", "database": "x", "username": "u"}


async def _create(
    client: httpx.AsyncClient,
    owner: Account,
    db: SeededDatabase,
    name: str = "warehouse",
    **kw: Any,
) -> dict[str, Any]:
    body = {"name": name, "type": db.type, "settings": db.settings(), "password": db.password}
    body.update(kw)
    created = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _test(client: httpx.AsyncClient, owner: Account, connector_id: str) -> dict[str, Any]:
    answered = await client.post(f"/api/v1/connectors/{connector_id}/test", headers=owner.headers)
    assert answered.status_code == 200, answered.text
    return dict(answered.json())


async def test_create_read_update_version_and_delete(
    client: httpx.AsyncClient, owner: Account, seeded_mariadb: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_mariadb)
    assert created["latest_version"] == 1
    assert created["has_credential"] is True
    assert created["settings"]["read_only"] is True  # the default
    assert created["settings"]["tls"] == "disable"

    same = await client.patch(
        f"/api/v1/connectors/{created['id']}",
        json={"settings": seeded_mariadb.settings()},
        headers=owner.headers,
    )
    assert same.json()["latest_version"] == 1, "unchanged settings keep their version"

    changed = await client.patch(
        f"/api/v1/connectors/{created['id']}",
        json={"settings": seeded_mariadb.settings(max_rows=2)},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["latest_version"] == 2
    versions = await client.get(
        f"/api/v1/connectors/{created['id']}/versions", headers=owner.headers
    )
    assert [v["settings"]["max_rows"] for v in versions.json()["items"]] == [1000, 2]
    first = await client.get(
        f"/api/v1/connectors/{created['id']}/versions/1", headers=owner.headers
    )
    assert first.json()["settings"]["max_rows"] == 1000

    listed = await client.get("/api/v1/connectors", headers=owner.headers)
    assert [c["name"] for c in listed.json()["items"]] == ["warehouse"]

    gone = await client.delete(f"/api/v1/connectors/{created['id']}", headers=owner.headers)
    assert gone.status_code == 204
    again = await client.get(f"/api/v1/connectors/{created['id']}", headers=owner.headers)
    assert again.status_code == 404
    secrets = await client.get("/api/v1/secrets", headers=owner.headers)
    assert "connectors/warehouse/password" not in secrets.text


async def test_the_password_is_never_answered_nor_audited(
    client: httpx.AsyncClient, owner: Account, seeded_mariadb: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_mariadb)
    url = f"/api/v1/connectors/{created['id']}"
    replaced = await client.patch(
        url,
        json={"password": "second-password-xyz"},
        headers=owner.headers,
    )
    assert replaced.status_code == 200
    answers = [
        created,
        replaced.text,
        (await client.get("/api/v1/connectors", headers=owner.headers)).text,
        (await client.get(url, headers=owner.headers)).text,
        (await client.get(f"{url}/versions/1", headers=owner.headers)).text,
        await _test(client, owner, created["id"]),
        (await client.get("/api/v1/audit-events", headers=owner.headers)).text,
        (await client.get("/api/v1/secrets", headers=owner.headers)).text,
    ]  # fmt: skip
    for answer in answers:
        assert seeded_mariadb.password not in str(answer)
        assert "second-password-xyz" not in str(answer)
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    actions = [e["action"] for e in events if e["action"].startswith("connector.")]
    assert sorted(actions) == ["connector.create", "connector.test", "connector.update"]


async def test_a_connection_test_connects_and_authenticates(
    client: httpx.AsyncClient,
    owner: Account,
    seeded_postgres: SeededDatabase,
    seeded_mariadb: SeededDatabase,
) -> None:
    for db, server in ((seeded_postgres, "PostgreSQL"), (seeded_mariadb, "MariaDB")):
        created = await _create(client, owner, db, name=db.type)
        tested = await _test(client, owner, created["id"])
        assert tested["ok"] is True, tested
        assert server in tested["server_version"]


async def test_a_wrong_password_is_auth_failed(
    client: httpx.AsyncClient, owner: Account, seeded_mariadb: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_mariadb, password="not-the-password")
    tested = await _test(client, owner, created["id"])
    assert tested["ok"] is False
    assert tested["code"] == "auth_failed"
    assert seeded_mariadb.username in tested["message"]
    assert "not-the-password" not in str(tested)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"port": 9}, "unreachable"),  # nothing listens: refused
        ({"tls": "require"}, "tls"),  # this PostgreSQL offers no TLS
        ({"database": "no_such_database"}, "database"),
    ],
)
async def test_connection_failures_say_what_failed(
    client: httpx.AsyncClient,
    owner: Account,
    seeded_postgres: SeededDatabase,
    overrides: dict[str, Any],
    code: str,
) -> None:
    created = await _create(
        client, owner, seeded_postgres, settings=seeded_postgres.settings(**overrides)
    )
    tested = await _test(client, owner, created["id"])
    assert (tested["ok"], tested["code"]) == (False, code), tested


async def test_mariadb_without_tls_is_refused_when_tls_is_asked(
    client: httpx.AsyncClient, owner: Account, seeded_mariadb: SeededDatabase
) -> None:
    """aiomysql would carry on in clear text; the connector refuses instead."""
    settings = seeded_mariadb.settings(tls="verify-full")
    created = await _create(client, owner, seeded_mariadb, settings=settings)
    tested = await _test(client, owner, created["id"])
    assert (tested["ok"], tested["code"]) == (False, "tls"), tested


async def test_no_password_is_credential_missing(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_postgres, password=None)
    assert created["has_credential"] is False
    tested = await _test(client, owner, created["id"])
    assert (tested["ok"], tested["code"]) == (False, "credential_missing")


@pytest.mark.parametrize("host", ["169.254.169.254", "10.1.2.3", "100.64.0.1", "[::1]"])
async def test_a_host_the_outbound_guard_refuses_is_a_422_naming_it(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase, host: str
) -> None:
    body = {
        "name": "internal",
        "type": "postgresql",
        "settings": seeded_postgres.settings(host=host),
    }
    refused = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "settings.host"
    listed = await client.get("/api/v1/connectors", headers=owner.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"type": "mongodb"}, "type"),
        ({"settings": {**SETTINGS, "database": "x; drop"}}, "database"),
        ({"settings": {**SETTINGS, "max_rows": 0}}, "max_rows"),
        ({"settings": {**SETTINGS, "extra": 1}}, "extra"),
        ({"settings": {**SETTINGS, "tls": "maybe"}}, "tls"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, owner: Account, body: dict[str, Any], field: str
) -> None:
    full = {
        "name": "db",
        "type": "postgresql",
        "settings": {"host": "127.0.0.1", "database": "x", "username": "u"},
    }
    refused = await client.post("/api/v1/connectors", json={**full, **body}, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert field in refused.text


async def test_a_duplicate_name_is_a_422(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase
) -> None:
    await _create(client, owner, seeded_postgres)
    body = {"name": "warehouse", "type": "postgresql", "settings": seeded_postgres.settings()}
    again = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert again.status_code == 422
    assert again.json()["error"]["details"] == [{"field": "name", "message": "already exists"}]


async def test_another_tenants_connector_is_absent_and_untouched(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_postgres)
    attacker = await signup(client, "Other")
    url = f"/api/v1/connectors/{created['id']}"
    for method, path, body in (
        ("GET", url, None),
        ("GET", f"{url}/versions", None),
        ("PATCH", url, {"password": "attacker-chosen", "settings": seeded_postgres.settings()}),
        ("POST", f"{url}/test", None),
        ("DELETE", url, None),
    ):
        answered = await client.request(method, path, json=body, headers=attacker.headers)
        assert answered.status_code == 404, f"{method} {path}: {answered.text}"
    listed = await client.get("/api/v1/connectors", headers=attacker.headers)
    assert listed.json()["items"] == []
    mine = await client.get(url, headers=owner.headers)
    assert mine.json()["latest_version"] == 1
    assert mine.json()["credential_updated_at"] == created["credential_updated_at"]


async def test_a_viewer_reads_but_cannot_create_or_test(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase
) -> None:
    created = await _create(client, owner, seeded_postgres)
    viewer = await member(client, owner, "viewer")
    assert (await client.get("/api/v1/connectors", headers=viewer.headers)).status_code == 200
    body = {"name": "mine", "type": "postgresql", "settings": seeded_postgres.settings()}
    denied = await client.post("/api/v1/connectors", json=body, headers=viewer.headers)
    assert denied.status_code == 403
    tested = await client.post(f"/api/v1/connectors/{created['id']}/test", headers=viewer.headers)
    assert tested.status_code == 403


ANALYST = """\
kind: Agent
metadata: {name: analyst}
spec:
  model: {provider: demo, name: demo}
  tools:
    - connector: {name: warehouse, operations: [sql.query]}
"""
ROLES = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: analyst
      permissions: [{resource: "connector:warehouse", actions: [read]}]
"""


async def _bundle_data(client: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    bundle = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=owner.headers
    )
    assert bundle.status_code == 200, bundle.text
    with tarfile.open(fileobj=io.BytesIO(bundle.content), mode="r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("data.json"))
        extracted = archive.extractfile(member)
        assert extracted is not None
        return dict(json.loads(extracted.read()))


async def test_a_deployed_agents_connector_rides_the_bundle_and_follows_its_changes(
    client: httpx.AsyncClient, owner: Account, seeded_postgres: SeededDatabase
) -> None:
    connector = await _create(client, owner, seeded_postgres)
    applied = await client.post("/api/v1/agents", json={"source": ANALYST}, headers=owner.headers)
    assert applied.status_code == 201, applied.text
    url = f"/api/v1/connectors/{connector['id']}"
    assert (await client.get(url, headers=owner.headers)).json()["agents"] == ["analyst"]
    await client.post("/api/v1/policies", json={"source": ROLES}, headers=owner.headers)
    assert (await client.post("/api/v1/policies/publish", headers=owner.headers)).status_code == 201
    gateway = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "https://gw.example.com"},
        headers=owner.headers,
    )
    deployed = await client.post(
        "/api/v1/deployments",
        json={"gateway_id": gateway.json()["id"], "kind": "agent", "name": "analyst"},
        headers=owner.headers,
    )
    assert deployed.status_code == 201, deployed.text
    data = await _bundle_data(client, owner)
    carried = data["kaizen"]["connectors"]["warehouse"]
    assert carried["database"] == seeded_postgres.database
    assert seeded_postgres.password not in json.dumps(data)

    changed = await client.patch(
        url, json={"settings": seeded_postgres.settings(max_rows=7)}, headers=owner.headers
    )
    assert changed.status_code == 200, changed.text
    assert (await _bundle_data(client, owner))["kaizen"]["connectors"]["warehouse"][
        "max_rows"
    ] == 7, "the new settings are re-signed into the bundle at once"

    in_use = await client.delete(url, headers=owner.headers)
    assert in_use.status_code == 409, in_use.text
    assert "analyst" in in_use.json()["error"]["message"]
    assert (await client.get(url, headers=owner.headers)).status_code == 200
