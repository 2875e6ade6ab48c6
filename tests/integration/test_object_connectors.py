"""The S3 and Azure Blob connectors against local servers speaking their real protocols
(moto's S3 server with IAM authentication on; Microsoft's azurite): list, get and put, the
limits that cut results, and the errors a tenant needs — a wrong key, a bucket that does
not exist, an endpoint nothing listens on, an endpoint the outbound guard refuses."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from policy.connectors import ConnectorError
from policy.connectors import test_connection as check_connection
from policy.connectors.objects import ObjectCall, ObjectStoreSettings
from policy.connectors.registry import run_object_call, settings_from_dict
from policy.net.outbound import OutboundGuard
from tests.e2e.sidecar_procs import free_port
from tests.object_stores import OBJECTS, AzuriteServer, S3Server

LOCAL = OutboundGuard.from_setting("127.0.0.1/32")


class Store:
    """One store under test: its settings, credential and a way to read what was written."""

    def __init__(self, kind: str, server: S3Server | AzuriteServer) -> None:
        self.kind, self.server = kind, server

    @property
    def secret(self) -> str:
        if isinstance(self.server, S3Server):
            return self.server.secret_access_key
        return self.server.account_key

    def settings(self, **overrides: Any) -> ObjectStoreSettings:
        if isinstance(self.server, S3Server):
            raw: dict[str, Any] = {
                "type": "s3",
                "endpoint_url": self.server.url,
                "access_key_id": self.server.access_key_id,
            }
        else:
            raw = {
                "type": "azure_blob",
                "account_url": self.server.url,
                "account_name": self.server.account_name,
            }
        settings = settings_from_dict({**raw, **overrides})
        assert isinstance(settings, ObjectStoreSettings)
        return settings

    def endpoint_override(self, url: str) -> dict[str, str]:
        field = "endpoint_url" if self.kind == "s3" else "account_url"
        return {field: url}


@pytest.fixture(params=["s3", "azure_blob"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "s3":
        return Store("s3", request.getfixturevalue("moto_s3"))
    return Store("azure_blob", request.getfixturevalue("azurite"))


async def _call(
    store: Store, operation: str, settings: ObjectStoreSettings | None = None, **arguments: Any
) -> dict[str, Any]:
    call = ObjectCall.parse(operation, arguments)
    result = await run_object_call(settings or store.settings(), store.secret, LOCAL, call)
    return result.to_dict()


async def test_list_answers_the_keys_under_a_prefix(store: Store) -> None:
    answer = await _call(store, "objects.list", bucket="docs", prefix="reports/")
    assert [o["key"] for o in answer["objects"]] == [
        "reports/q1.txt",
        "reports/q2.txt",
        "reports/q3.txt",
    ]
    assert answer["objects"][0]["size"] == len(OBJECTS[("docs", "reports/q1.txt")])
    assert answer["truncated"] is False


async def test_a_listing_is_cut_at_max_objects_and_says_so(store: Store) -> None:
    settings = store.settings(max_objects=2)
    answer = await _call(store, "objects.list", settings, bucket="docs", prefix="reports/")
    assert [o["key"] for o in answer["objects"]] == ["reports/q1.txt", "reports/q2.txt"]
    assert (answer["truncated"], answer["limit"]) == (True, "max_objects=2")
    assert answer["note"] == "listing cut at max_objects=2; 2 returned"


async def test_get_answers_the_content(store: Store) -> None:
    answer = await _call(store, "objects.get", bucket="docs", key="reports/q2.txt")
    assert answer["content"] == "q2 revenue: 20"
    assert answer["size"] == 14
    assert answer["truncated"] is False


async def test_get_is_cut_at_max_bytes_and_says_so(store: Store) -> None:
    settings = store.settings(max_bytes=300)
    answer = await _call(store, "objects.get", settings, bucket="docs", key="big.bin")
    assert base64.b64decode(answer["content_base64"]) == OBJECTS[("docs", "big.bin")][:300]
    assert (answer["truncated"], answer["limit"], answer["size"]) == (True, "max_bytes=300", 10240)
    assert answer["note"] == "content cut at max_bytes=300 of 10240 bytes"


async def test_put_writes_the_object(store: Store) -> None:
    settings = store.settings(read_only=False)
    answer = await _call(
        store, "objects.put", settings, bucket="inbox", key=f"{store.kind}/note.txt", content="hi"
    )
    assert (answer["size"], answer["key"]) == (2, f"{store.kind}/note.txt")
    assert store.server.read("inbox", f"{store.kind}/note.txt") == b"hi"


async def test_a_read_only_connector_refuses_a_put_before_any_request(store: Store) -> None:
    with pytest.raises(ConnectorError) as refused:
        await _call(store, "objects.put", bucket="inbox", key="ro.txt", content="no")
    assert refused.value.code == "read_only"
    assert store.server.read("inbox", "ro.txt") is None


async def test_a_put_over_max_bytes_is_refused(store: Store) -> None:
    settings = store.settings(read_only=False, max_bytes=4)
    with pytest.raises(ConnectorError) as refused:
        await _call(store, "objects.put", settings, bucket="inbox", key="big.txt", content="12345")
    assert refused.value.code == "too_large"
    assert store.server.read("inbox", "big.txt") is None


async def test_a_bucket_the_connector_does_not_serve_is_refused(store: Store) -> None:
    settings = store.settings(buckets=["docs"])
    with pytest.raises(ConnectorError) as refused:
        await _call(store, "objects.get", settings, bucket="secret", key="payroll.csv")
    assert refused.value.code == "bucket_not_served"


async def test_a_missing_object_is_not_found(store: Store) -> None:
    with pytest.raises(ConnectorError) as missing:
        await _call(store, "objects.get", bucket="docs", key="reports/q9.txt")
    assert missing.value.code == "not_found"


async def test_a_missing_bucket_is_named(store: Store) -> None:
    with pytest.raises(ConnectorError) as missing:
        await _call(store, "objects.list", bucket="no-such-bucket", prefix="")
    assert missing.value.code == "no_bucket"
    assert "no-such-bucket" in missing.value.message
    with pytest.raises(ConnectorError) as tested:
        await check_connection(store.settings(buckets=["docs", "nope-bucket"]), store.secret, LOCAL)
    assert tested.value.code == "no_bucket"
    assert "nope-bucket" in tested.value.message


async def test_the_connection_test_signs_in_and_reaches_the_buckets(store: Store) -> None:
    answer = await check_connection(store.settings(buckets=["docs", "secret"]), store.secret, LOCAL)
    assert "docs, secret" in answer
    assert await check_connection(store.settings(), store.secret, LOCAL)


async def test_a_wrong_key_is_auth_failed_and_the_key_is_in_no_message(store: Store) -> None:
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5" + store.kind.replace("_", "")
    for attempt in (
        check_connection(store.settings(buckets=["docs"]), wrong, LOCAL),
        run_object_call(
            store.settings(),
            wrong,
            LOCAL,
            ObjectCall.parse("objects.get", {"bucket": "docs", "key": "reports/q1.txt"}),
        ),
    ):
        with pytest.raises(ConnectorError) as failed:
            await attempt
        assert failed.value.code == "auth_failed", failed.value.message
        assert wrong not in failed.value.message
        assert store.secret not in failed.value.message


async def test_a_closed_port_is_unreachable(store: Store) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    if store.kind == "azure_blob":
        closed += "/devstoreaccount1"
    settings = store.settings(**store.endpoint_override(closed))
    with pytest.raises(ConnectorError) as failed:
        await check_connection(settings, store.secret, LOCAL)
    assert failed.value.code == "unreachable", failed.value.message


async def test_the_outbound_guard_refuses_loopback_without_the_operators_allowance(
    store: Store,
) -> None:
    """The emulator answers on 127.0.0.1; a guard without the allowance never reaches it."""
    with pytest.raises(ConnectorError) as refused:
        await _call_with(store, OutboundGuard.from_setting(""))
    assert refused.value.code == "refused", refused.value.message


async def _call_with(store: Store, guard: OutboundGuard) -> None:
    call = ObjectCall.parse("objects.get", {"bucket": "docs", "key": "reports/q1.txt"})
    await run_object_call(store.settings(), store.secret, guard, call)


async def test_the_hosts_aws_configuration_is_not_the_connectors(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A gateway host's AWS_PROFILE or config file neither breaks nor steers a connector."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:1\n")
    monkeypatch.setenv("AWS_PROFILE", "not-on-this-host")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    store = Store("s3", moto_s3)
    answer = await _call(store, "objects.get", bucket="docs", key="reports/q3.txt")
    assert answer["content"] == "q3 revenue: 30"


async def test_no_signed_request_is_logged_even_at_debug(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed request is a credential while it is valid: neither the key nor a signature
    nor an Authorization header reaches a log line, whatever the level."""
    with caplog.at_level(logging.DEBUG):
        await _call(store, "objects.get", bucket="docs", key="reports/q1.txt")
        with pytest.raises(ConnectorError):
            await _call_with_secret(store, "V3JvbmdLZXlXcm9uZ0tleQ==")
    # moto serves in this process and logs what it receives: its lines are the server's.
    ours = [r for r in caplog.records if not r.name.startswith(("moto", "werkzeug"))]
    logged = "\n".join(r.getMessage() for r in ours)
    assert store.secret not in logged
    assert "Signature=" not in logged
    assert "SharedKey " not in logged
    assert "StringToSign" not in logged


async def _call_with_secret(store: Store, secret: str) -> None:
    call = ObjectCall.parse("objects.get", {"bucket": "docs", "key": "reports/q1.txt"})
    await run_object_call(store.settings(), secret, LOCAL, call)
