"""Providers against the fake LLM server's real wire protocols: replies, streaming, tool
calls, and every way a provider can fail turning into a typed error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateways.errors import ProviderError, ProviderTimeout  # noqa: TID251  (the gateway under test)
from gateways.providers import (  # noqa: TID251  (the gateway under test)
    ChatRequest,
    ChatResult,
    EnvSecretResolver,
    PriceTable,
    ProviderRegistry,
    TextDelta,
    ToolSpec,
    Usage,
)
from gateways.providers.base import Provider  # noqa: TID251  (the gateway under test)
from policy.net.outbound import OutboundGuard
from policy.workloads import ModelConfig
from tests.fake_llm import FakeLLM, Reply

SECRET = "sk-test-never-logged-0123456789"


# The fake LLM listens on 127.0.0.1: the operator allowance, and the key bound to that host.
LOCAL = OutboundGuard.from_setting("127.0.0.1/32")


@pytest.fixture
async def registry() -> AsyncIterator[ProviderRegistry]:
    secrets = EnvSecretResolver(
        environ={"KAIZEN_SECRET_LLM_KEY": SECRET, "KAIZEN_SECRET_LLM_KEY_HOST": "127.0.0.1"}
    )
    registry = ProviderRegistry(secrets, LOCAL)
    yield registry
    await registry.aclose()


def provider(registry: ProviderRegistry, fake: FakeLLM, kind: str) -> Provider:
    return registry.get(ModelConfig(kind, "m", {}, fake.openai_url, "llm-key"))


def request(timeout: float = 5.0, tools: bool = False) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        tools=(ToolSpec("lookup", "look things up", {"type": "object"}),) if tools else (),
        timeout_seconds=timeout,
    )


async def collect(p: Provider, req: ChatRequest) -> tuple[str, ChatResult]:
    deltas, final = [], None
    async for event in p.stream(req):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            final = event
    assert final is not None
    return "".join(deltas), final


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_reply_usage_and_credentials(
    kind: str, fake: FakeLLM, registry: ProviderRegistry
) -> None:
    fake.reset(lambda m, msgs: Reply("hi there friend", input_tokens=12, output_tokens=3))
    result = await provider(registry, fake, kind).complete(request())
    assert result.text == "hi there friend"
    assert result.usage == Usage(12, 3)
    headers = fake.headers[-1]
    if kind == "openai":
        assert headers["authorization"] == f"Bearer {SECRET}"
        assert fake.requests[-1]["messages"][0] == {"role": "system", "content": "be brief"}
    else:
        assert headers["x-api-key"] == SECRET
        assert "anthropic-version" in headers
        assert fake.requests[-1]["system"] == "be brief"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_streaming_yields_deltas_then_the_result(
    kind: str, fake: FakeLLM, registry: ProviderRegistry
) -> None:
    fake.reset(lambda m, msgs: Reply("one two three", input_tokens=7, output_tokens=3))
    text, final = await collect(provider(registry, fake, kind), request())
    assert text == final.text == "one two three"
    assert final.usage == Usage(7, 3)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls(
    kind: str, stream: bool, fake: FakeLLM, registry: ProviderRegistry
) -> None:
    fake.reset(lambda m, msgs: Reply(tool_calls=[("lookup", {"q": "kaizen", "n": 2})]))
    p = provider(registry, fake, kind)
    result = (
        (await collect(p, request(tools=True)))[1]
        if stream
        else await p.complete(request(tools=True))
    )
    (call,) = result.tool_calls
    assert call.name == "lookup"
    assert call.arguments == {"q": "kaizen", "n": 2}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply(mode="error", status=500), ProviderError, "HTTP 500: scripted failure"),
        (Reply(mode="error", status=429), ProviderError, "HTTP 429"),
        (Reply(mode="garbage"), ProviderError, "not JSON"),
        (Reply(mode="bad_shape"), ProviderError, "JSON that is not"),
        (Reply("slow", delay=1.0), ProviderTimeout, "did not answer within 0.2 s"),
    ],
)
async def test_failures_are_typed(
    kind: str,
    reply: Reply,
    error: type[Exception],
    message: str,
    fake: FakeLLM,
    registry: ProviderRegistry,
) -> None:
    fake.reset(lambda m, msgs: reply)
    with pytest.raises(error, match=message) as caught:
        await provider(registry, fake, kind).complete(request(timeout=0.2))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply("cut short here", mode="truncated_stream"), ProviderError, "stream ended without"),
        (Reply(mode="garbage"), ProviderError, "event stream"),
        (Reply(mode="error", status=503), ProviderError, "HTTP 503"),
        (Reply("a b c d", delay=0.5), ProviderTimeout, "stalled"),
    ],
)
async def test_stream_failures_are_typed(
    kind: str,
    reply: Reply,
    error: type[Exception],
    message: str,
    fake: FakeLLM,
    registry: ProviderRegistry,
) -> None:
    fake.reset(lambda m, msgs: reply)
    with pytest.raises(error, match=message):
        await collect(provider(registry, fake, kind), request(timeout=0.2))


async def test_unreachable_provider_is_a_provider_error(registry: ProviderRegistry) -> None:
    p = registry.get(ModelConfig("vllm", "m", {}, "http://127.0.0.1:9/v1"))
    with pytest.raises(ProviderError, match="unreachable"):
        await p.complete(request())


async def test_missing_secret_names_the_variable_not_a_value() -> None:
    registry = ProviderRegistry(EnvSecretResolver(environ={}))
    with pytest.raises(ProviderError, match="KAIZEN_SECRET_OPENAI_PROD"):
        registry.get(ModelConfig("openai", "gpt-4o", {}, None, "openai-prod"))
    await registry.aclose()


def test_price_table_defaults_and_overrides() -> None:
    prices = PriceTable()
    assert prices.cost("gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(0.75)
    assert prices.cost("unknown-model", Usage(10, 10)) == 0.0
    assert not prices.known("unknown-model")
    custom = PriceTable.from_json('{"gpt-4o-mini": [1, 2], "local": [0, 0]}')
    assert custom.cost("gpt-4o-mini", Usage(500_000, 250_000)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="input_per_1m"):
        PriceTable.from_json('{"x": [1]}')


async def test_the_demo_provider_is_offline_and_says_so() -> None:
    registry = ProviderRegistry(EnvSecretResolver(environ={}))
    demo = registry.get(ModelConfig("demo", "demo"))
    result = await demo.complete(request())
    assert result.text.startswith("[demo provider: offline, not a language model]")
    assert "hello" in result.text
    text, final = await collect(demo, request())
    assert text == final.text == result.text
    await registry.aclose()
