"""`/api/v1/connectors` for the object stores: an S3 connector against moto's S3 server and
an Azure Blob connector against azurite, created with their write-only key, tested (signed
in, a missing bucket named, a wrong key), their endpoint judged by the outbound guard, bad
settings a 422 naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.object_stores import AzuriteServer, S3Server


def _body(kind: str, server: S3Server | AzuriteServer, **settings: Any) -> dict[str, Any]:
    if isinstance(server, S3Server):
        base: dict[str, Any] = {"endpoint_url": server.url, "access_key_id": server.access_key_id}
        secret = server.secret_access_key
    else:
        base = {"account_url": server.url, "account_name": server.account_name}
        secret = server.account_key
    return {"name": kind.replace("_", "-"), "type": kind, "settings": {**base, **settings},
            "password": secret}  # fmt: skip


@pytest.fixture(params=["s3", "azure_blob"])
def server(request: pytest.FixtureRequest) -> tuple[str, S3Server | AzuriteServer]:
    fixture = "moto_s3" if request.param == "s3" else "azurite"
    return request.param, request.getfixturevalue(fixture)


async def _test(client: httpx.AsyncClient, owner: Account, connector_id: str) -> dict[str, Any]:
    answered = await client.post(f"/api/v1/connectors/{connector_id}/test", headers=owner.headers)
    assert answered.status_code == 200, answered.text
    return dict(answered.json())


async def test_an_object_store_connector_is_created_and_tested_without_showing_its_key(
    client: httpx.AsyncClient, owner: Account, server: tuple[str, S3Server | AzuriteServer]
) -> None:
    kind, store = server
    body = _body(kind, store, buckets=["docs"])
    created = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert created.status_code == 201, created.text
    connector = created.json()
    assert (connector["type"], connector["has_credential"]) == (kind, True)
    assert connector["settings"]["buckets"] == ["docs"]
    assert connector["settings"]["read_only"] is True
    tested = await _test(client, owner, connector["id"])
    assert tested["ok"] is True, tested

    url = f"/api/v1/connectors/{connector['id']}"
    missing = await client.patch(
        url, json={"settings": {**body["settings"], "buckets": ["docs", "gone"]}},
        headers=owner.headers,
    )  # fmt: skip
    assert missing.status_code == 200, missing.text
    assert missing.json()["latest_version"] == 2
    tested = await _test(client, owner, connector["id"])
    assert (tested["ok"], tested["code"]) == (False, "no_bucket")
    assert "'gone'" in tested["message"]

    wrong = "V3Jvbmcgc2VjcmV0IGtleSB2YWx1ZQ=="
    assert (await client.patch(url, json={"password": wrong}, headers=owner.headers)).is_success
    tested = await _test(client, owner, connector["id"])
    assert (tested["ok"], tested["code"]) == (False, "auth_failed"), tested

    answers = [
        created.text,
        missing.text,
        (await client.get(url, headers=owner.headers)).text,
        (await client.get(f"{url}/versions/1", headers=owner.headers)).text,
        (await client.get("/api/v1/connectors", headers=owner.headers)).text,
        (await client.get("/api/v1/audit-events", headers=owner.headers)).text,
        str(tested),
    ]
    for answer in answers:
        assert body["password"] not in answer
        assert wrong not in answer


async def test_a_sql_settings_update_of_an_object_store_is_a_422(
    client: httpx.AsyncClient, owner: Account, moto_s3: S3Server
) -> None:
    created = await client.post(
        "/api/v1/connectors", json=_body("s3", moto_s3), headers=owner.headers
    )
    refused = await client.patch(
        f"/api/v1/connectors/{created.json()['id']}",
        json={"settings": {"host": "127.0.0.1", "database": "x", "username": "u"}},
        headers=owner.headers,
    )
    assert refused.status_code == 422, refused.text
    assert "unknown connector setting" in refused.text


@pytest.mark.parametrize(
    ("kind", "field", "url"),
    [
        ("s3", "endpoint_url", "http://169.254.169.254/"),
        ("s3", "endpoint_url", "http://10.0.0.8:9000"),
        ("azure_blob", "account_url", "http://[::1]:10000/devstoreaccount1"),
        ("azure_blob", "account_url", "http://user@127.0.0.1/x"),
    ],
)
async def test_an_endpoint_the_outbound_guard_refuses_is_a_422_naming_it(
    client: httpx.AsyncClient, owner: Account, kind: str, field: str, url: str
) -> None:
    identity = {"access_key_id": "AKIAEXAMPLE"} if kind == "s3" else {"account_name": "acct"}
    body = {"name": "store", "type": kind, "settings": {**identity, field: url}}
    refused = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert field in refused.text
    listed = await client.get("/api/v1/connectors", headers=owner.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"access_key_id": "AK", "buckets": ["Bad_Bucket"]}, "buckets"),
        ({"access_key_id": "AK", "max_objects": 0}, "max_objects"),
        ({"access_key_id": "AK", "endpoint_url": "ftp://127.0.0.1/"}, "endpoint_url"),
        ({"access_key_id": "AK", "host": "x"}, "host"),
        ({"access_key_id": "key with spaces"}, "access_key_id"),
        ({}, "access_key_id"),
    ],
)  # fmt: skip
async def test_bad_s3_settings_are_a_422_naming_the_field(
    client: httpx.AsyncClient, owner: Account, settings: dict[str, Any], field: str
) -> None:
    body = {"name": "store", "type": "s3", "settings": settings}
    refused = await client.post("/api/v1/connectors", json=body, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert field in refused.text
