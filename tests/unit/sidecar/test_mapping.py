"""Gateway routes → action, resource, channel and tool; everything else refused with a reason."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.mapping import HttpFacts, MappingError, map_request
from tests.unit.sidecar.factory import Keys, access_token

AGENTS = {"ops": {"tools": ["restart-service"]}}


def facts(method: str, path: str, body: object = b"", **headers: str) -> HttpFacts:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpFacts(method, path, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def mcp(method: str, params: object = None) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    return message


def test_agent_invoke_is_api_unless_the_cli_says_so() -> None:
    mapped = map_request(facts("POST", "/v1/agents/support-bot/invoke?x=1"))
    assert (mapped.action, mapped.resource_id, mapped.channel) == (
        "invoke",
        "agent:support-bot",
        "api",
    )
    cli = map_request(facts("POST", "/v1/agents/support-bot/invoke", x_kaizen_channel="cli"))
    assert cli.channel == "cli"


def test_pipeline_run() -> None:
    mapped = map_request(facts("POST", "/v1/pipelines/etl.nightly/run"))
    assert (mapped.action, mapped.resource_type, mapped.resource_id) == (
        "run",
        "pipeline",
        "pipeline:etl.nightly",
    )


def test_a_connector_call_is_its_operation_on_the_connector_with_the_table_as_object() -> None:
    mapped = map_request(facts("POST", "/v1/connectors/warehouse/read/table:public.orders"))
    assert (mapped.action, mapped.resource_type, mapped.resource_id) == (
        "read",
        "connector",
        "connector:warehouse",
    )
    assert mapped.attributes == {
        "operation": "sql.query",
        "object": "table:public.orders",
        "sql": None,
    }
    sql = {"sql": "SELECT * FROM orders"}
    with_body = map_request(facts("POST", "/v1/connectors/w/read/table:public.orders", sql))
    assert with_body.attributes["sql"] == "SELECT * FROM orders"
    assert with_body.body_sha256 == hashlib.sha256(json.dumps(sql).encode()).hexdigest()
    write = map_request(
        facts("POST", "/v1/connectors/warehouse/write/table:s.t", x_kaizen_channel="mcp")
    )
    assert (write.action, write.channel, write.narrowing) == ("write", "mcp", True)
    no_table = map_request(facts("POST", "/v1/connectors/warehouse/read"))
    assert no_table.attributes == {"operation": "sql.query", "object": None, "sql": None}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/connectors/warehouse/drop/table:public.orders",  # not an operation
        "/v1/connectors/warehouse/read/table:public",  # no table name
        "/v1/connectors/warehouse/read/table:public.orders/extra",
        "/v1/connectors/warehouse/read/table:pub%2Fx.orders",
        "/v1/connectors/../read/table:public.orders",
        "/v1/connectors/warehouse/read/bucket:x",
    ],
)
def test_other_connector_paths_are_refused(path: str) -> None:
    with pytest.raises(MappingError, match="no gateway route"):
        map_request(facts("POST", path))


def test_an_object_call_names_the_bucket_and_key_from_its_body() -> None:
    body = {"bucket": "docs", "key": "reports/q1.txt"}
    mapped = map_request(facts("POST", "/v1/connectors/files/read/objects.get", body))
    assert (mapped.action, mapped.resource_id) == ("read", "connector:files")
    assert mapped.attributes == {
        "operation": "objects.get",
        "object": "docs/reports/q1.txt",
        "bucket": "docs",
        "key": "reports/q1.txt",
    }
    assert mapped.body_sha256 == hashlib.sha256(json.dumps(body).encode()).hexdigest()
    listed = map_request(
        facts("POST", "/v1/connectors/files/read/objects.list", {"bucket": "docs", "prefix": ""})
    )
    assert listed.attributes["object"] == "docs/"
    put = {"bucket": "inbox", "key": "a.txt", "bytes": 2, "sha256": "ab" * 32}
    written = map_request(facts("POST", "/v1/connectors/files/write/objects.put", put))
    assert (written.action, written.attributes["sha256"], written.attributes["bytes"]) == (
        "write",
        "ab" * 32,
        2,
    )


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        ("/v1/connectors/f/read/objects.put", {"bucket": "docs", "key": "a"}, "is a write"),
        ("/v1/connectors/f/write/objects.get", {"bucket": "docs", "key": "a"}, "is a read"),
        ("/v1/connectors/f/read/objects.get", b"", "in the body"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "docs"}, "exactly"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "docs", "key": "a", "x": 1}, "exactly"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "Docs", "key": "a"}, "bucket"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "docs", "key": ""}, "key"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "docs", "key": "a\nb"}, "key"),
        ("/v1/connectors/f/read/objects.get", {"bucket": "docs", "key": ["a"]}, "key"),
        (
            "/v1/connectors/f/write/objects.put",
            {"bucket": "docs", "key": "a", "bytes": -1, "sha256": "ab" * 32},
            "bytes",
        ),
        (
            "/v1/connectors/f/write/objects.put",
            {"bucket": "docs", "key": "a", "bytes": 1, "sha256": "nothex"},
            "sha256",
        ),
    ],
)
def test_an_object_call_without_one_valid_object_is_refused(
    path: str, body: dict[str, object] | bytes, why: str
) -> None:
    with pytest.raises(MappingError, match=why):
        map_request(facts("POST", path, body))


def test_mcp_tool_call_names_the_tool_or_its_agent() -> None:
    call = map_request(
        facts("POST", "/mcp", mcp("tools/call", {"name": "search", "arguments": {"q": 1}}))
    )
    assert (call.action, call.resource_id, call.channel) == ("invoke", "agent:search", "mcp")
    assert call.tool == {"name": "search", "arguments": {"q": 1}}
    mapped = map_request(
        facts("POST", "/mcp", mcp("tools/call", {"name": "restart-service"})), AGENTS
    )
    assert mapped.resource_id == "agent:ops"
    assert mapped.tool == {"name": "restart-service", "arguments": {}}


@pytest.mark.parametrize(
    ("method", "action"),
    [("initialize", "connect"), ("notifications/initialized", "connect"), ("tools/list", "list")],
)
def test_mcp_session_methods(method: str, action: str) -> None:
    mapped = map_request(facts("POST", "/mcp", mcp(method)))
    assert (mapped.action, mapped.resource_id, mapped.tool) == (action, "mcp:server", None)


@pytest.mark.parametrize(
    ("request_facts", "reason"),
    [
        (facts("GET", "/v1/agents/a/invoke"), "method 'GET' is not allowed"),
        (facts("POST", "/v1/agents/../invoke"), "no gateway route"),
        (facts("POST", "/v1/agents/a%2Fb/invoke"), "no gateway route"),
        (facts("POST", "/admin"), "no gateway route"),
        (facts("POST", "/mcp", b"{not json"), "not valid JSON"),
        (facts("POST", "/mcp", [mcp("tools/list")]), "batches are not supported"),
        (facts("POST", "/mcp", "a string"), "must be a JSON-RPC object"),
        (facts("POST", "/mcp", {"jsonrpc": "2.0"}), "no JSON-RPC method"),
        (facts("POST", "/mcp", mcp("tools/call")), "needs params"),
        (facts("POST", "/mcp", mcp("tools/call", {"name": "../x"})), "tool name"),
        (facts("POST", "/mcp", mcp("tools/call", {"name": "t", "arguments": [1]})), "JSON object"),
        (facts("POST", "/mcp", mcp("resources/read")), "not supported"),
        (facts("POST", "/mcp", b"[" * 100_000), "not valid JSON"),
    ],
)
def test_malformed_or_unknown_requests_are_refused_with_a_reason(
    request_facts: HttpFacts, reason: str
) -> None:
    with pytest.raises(MappingError, match=reason.replace("(", r"\(")):
        map_request(request_facts)


def test_truncated_mcp_body_is_refused() -> None:
    truncated = HttpFacts("POST", "/mcp", {}, b"{}", body_truncated=True)
    with pytest.raises(MappingError, match="too large"):
        map_request(truncated)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    method=st.sampled_from(["POST", "GET", "PUT", "", "post", "\x00"]),
    path=st.one_of(
        st.sampled_from(["/mcp", "/v1/agents/a/invoke", "/v1/pipelines/p/run"]),
        st.text(max_size=80),
    ),
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"method": st.sampled_from(["tools/call", "tools/list"]), "params": json_values}
        ).map(lambda v: json.dumps(v).encode()),
    ),
    headers=st.dictionaries(
        st.sampled_from(
            ["x-kaizen-channel", "x-kaizen-estimated-cost", "x-kaizen-approval", "x-other"]
        ),
        st.text(max_size=30),
        max_size=3,
    ),
)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_fuzzed_requests_are_decided_never_crash(
    authorizer: Authorizer, keys: Keys, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    with contextlib.suppress(MappingError):  # the only exception mapping may raise
        map_request(HttpFacts(method, path, headers, body), AGENTS)
    request = HttpFacts(
        method, path, {**headers, "authorization": f"Bearer {access_token(keys)}"}, body
    )
    verdict = await authorizer.check(request)
    assert verdict.status in (200, 403)
    assert verdict.reasons or verdict.status == 200
    assert verdict.reasons != ("internal error in the authz sidecar",)


@pytest.mark.parametrize(
    ("claim", "channel"), [("cli", "cli"), ("MCP", "mcp"), ("api", "api"), ("admin", "api")]
)
def test_a_claimed_channel_is_kept_beside_the_route_channel(claim: str, channel: str) -> None:
    facts = HttpFacts("POST", "/v1/agents/a/invoke", {"x-kaizen-channel": claim})
    mapped = map_request(facts)
    assert (mapped.channel, mapped.route_channel) == (channel, "api")
    assert mapped.narrowing is (channel != "api")


def test_a_refused_request_is_denied_with_its_reason() -> None:
    facts = HttpFacts("POST", "", {}, refusal="not from the proxy")
    with pytest.raises(MappingError, match="not from the proxy"):
        map_request(facts)


def test_invoke_and_run_carry_the_body_hash_only_when_the_body_was_seen() -> None:
    body = b'{"input": "hi"}'
    expected = hashlib.sha256(body).hexdigest()
    for path in ("/v1/agents/a/invoke", "/v1/pipelines/p/run"):
        assert map_request(facts("POST", path, body)).body_sha256 == expected
        unseen = HttpFacts("POST", path, {}, b"", body_seen=False)
        assert map_request(unseen).body_sha256 is None
        truncated = HttpFacts("POST", path, {}, body[:4], body_truncated=True)
        assert map_request(truncated).body_sha256 is None
