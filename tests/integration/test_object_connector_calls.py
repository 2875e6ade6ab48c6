"""The gateway's object tool (gateways/connector_calls.py) in the order it promises: refuse
arguments that name no single object, keep the connector's own bounds, ask the authorizer
for the object (a put with its content's hash), read the key, run. Against moto's S3 server;
the authorizer records what it is asked. The real sidecar deciding these calls is
tests/e2e/test_object_connectors_e2e.py."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from gateways import connector_calls  # noqa: TID251  (the gateway under test)
from gateways.deployments import Deployments  # noqa: TID251
from gateways.errors import Forbidden, ToolError  # noqa: TID251
from gateways.executor import Run  # noqa: TID251
from gateways.providers import PriceTable  # noqa: TID251
from gateways.providers.secrets import EnvSecretResolver  # noqa: TID251
from policy.connectors.registry import settings_from_dict
from policy.net.outbound import OutboundGuard
from policy.workloads import ConnectorTool, Limits
from tests.object_stores import S3Server

TOOL = ConnectorTool("files", ("objects.list", "objects.get", "objects.put"))
GUARD = OutboundGuard.from_setting("127.0.0.1/32")


class Authorizer:
    """Records each object check; refuses the buckets in `deny`."""

    def __init__(self, deny: frozenset[str] = frozenset()) -> None:
        self.asked: list[tuple[str, str, dict[str, Any]]] = []
        self.deny = deny

    async def check(self, caller: str, agent: str) -> None:
        raise AssertionError("no agent is called here")

    async def check_connector(self, *args: Any) -> None:
        raise AssertionError("no SQL is run here")

    async def check_object(
        self, caller: str, connector: str, action: str, operation: str, body: dict[str, Any]
    ) -> None:
        self.asked.append((action, operation, body))
        if body["bucket"] in self.deny:
            raise Forbidden(f"{caller}: denied {operation} {body['bucket']}")


async def _call(
    server: S3Server,
    arguments: dict[str, Any],
    authorizer: Authorizer | None,
    secret: str | None = None,
    **settings: Any,
) -> str:
    stored = settings_from_dict(
        {"type": "s3", "endpoint_url": server.url, "access_key_id": server.access_key_id,
         **settings}
    )  # fmt: skip
    run = Run(Limits(), PriceTable())
    run.nested = authorizer
    environ = {"KAIZEN_SECRET_CONNECTOR_FILES_PASSWORD": secret} if secret else {}
    return await connector_calls.call(
        TOOL,
        arguments,
        caller="agent clerk",
        deployments=Deployments("org", "1", "k", connectors={"files": stored}),
        run=run,
        secrets=EnvSecretResolver(environ=environ),
        guard=GUARD,
    )


async def test_a_get_is_asked_for_its_object_then_read(moto_s3: S3Server) -> None:
    authorizer = Authorizer()
    answer = await _call(
        moto_s3,
        {"operation": "objects.get", "bucket": "docs", "key": "reports/q1.txt"},
        authorizer,
        moto_s3.secret_access_key,
    )
    assert json.loads(answer)["content"] == "q1 revenue: 10"
    assert authorizer.asked == [
        ("read", "objects.get", {"bucket": "docs", "key": "reports/q1.txt"})
    ]


async def test_a_put_is_asked_with_its_contents_hash(moto_s3: S3Server) -> None:
    authorizer = Authorizer()
    arguments = {"operation": "objects.put", "bucket": "inbox", "key": "calls/a.txt",
                 "content": "hello"}  # fmt: skip
    answer = await _call(moto_s3, arguments, authorizer, moto_s3.secret_access_key, read_only=False)
    assert json.loads(answer)["size"] == 5
    digest = hashlib.sha256(b"hello").hexdigest()
    assert authorizer.asked == [
        ("write", "objects.put",
         {"bucket": "inbox", "key": "calls/a.txt", "bytes": 5, "sha256": digest}),
    ]  # fmt: skip
    assert moto_s3.read("inbox", "calls/a.txt") == b"hello"


async def test_a_denied_call_never_reaches_the_store(moto_s3: S3Server) -> None:
    arguments = {"operation": "objects.put", "bucket": "inbox", "key": "calls/denied.txt",
                 "content": "x"}  # fmt: skip
    with pytest.raises(Forbidden):
        await _call(
            moto_s3,
            arguments,
            Authorizer(deny=frozenset({"inbox"})),
            moto_s3.secret_access_key,
            read_only=False,
        )
    assert moto_s3.read("inbox", "calls/denied.txt") is None


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        ({"operation": "objects.get", "bucket": "docs", "key": "reports/../secret"}, "'..'"),
        ({"operation": "objects.get", "bucket": "docs", "key": "reports\\..\\x"}, "backslash"),
        ({"operation": "objects.get", "bucket": "docs", "key": "/reports/q1.txt"}, "'/'"),
        ({"operation": "objects.list", "bucket": "Docs"}, "bucket"),
        ({"operation": "objects.delete", "bucket": "docs", "key": "a"}, "operation must be"),
        ({"operation": "objects.put", "bucket": "docs", "key": "a", "content": "x"}, "read-only"),
    ],
)  # fmt: skip
async def test_what_names_no_single_object_is_refused_before_any_decision(
    moto_s3: S3Server, arguments: dict[str, Any], refusal: str
) -> None:
    """A prefix rule (`docs/reports/…`) must not be escaped by a key a client or the store
    would read as another object."""
    authorizer = Authorizer()
    answer = await _call(moto_s3, arguments, authorizer, moto_s3.secret_access_key)
    assert answer.startswith("error:"), answer
    assert refusal in answer
    assert authorizer.asked == []


async def test_without_a_sidecar_no_object_call_runs(moto_s3: S3Server) -> None:
    with pytest.raises(Forbidden):
        await _call(
            moto_s3,
            {"operation": "objects.list", "bucket": "docs"},
            None,
            moto_s3.secret_access_key,
        )


async def test_a_missing_or_wrong_key_fails_the_call_without_showing_it(
    moto_s3: S3Server,
) -> None:
    arguments = {"operation": "objects.list", "bucket": "docs", "prefix": "reports/"}
    with pytest.raises(ToolError) as missing:
        await _call(moto_s3, arguments, Authorizer())
    assert "KAIZEN_SECRET_CONNECTOR_FILES_PASSWORD" in missing.value.message
    with pytest.raises(ToolError) as wrong:
        await _call(moto_s3, arguments, Authorizer(), "not-the-secret-key-123")
    assert wrong.value.details == {"connector": "files", "code": "auth_failed"}
    assert "not-the-secret-key-123" not in wrong.value.message
