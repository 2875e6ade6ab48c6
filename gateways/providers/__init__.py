"""LLM providers: OpenAI-compatible, Anthropic and the offline demo; `ProviderRegistry`
builds (and reuses) the one a model config names, with credentials from a SecretResolver."""

from __future__ import annotations

import httpx
from policy.workloads import ModelConfig

from gateways.errors import ProviderError
from gateways.providers.anthropic import DEFAULT_BASE_URL as ANTHROPIC_URL
from gateways.providers.anthropic import AnthropicProvider
from gateways.providers.base import (
    ChatRequest,
    ChatResult,
    Provider,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from gateways.providers.demo import DemoProvider
from gateways.providers.http import new_client
from gateways.providers.openai import DEFAULT_BASE_URLS, OpenAIProvider
from gateways.providers.prices import PriceTable
from gateways.providers.secrets import EnvSecretResolver, SecretResolver

__all__ = [
    "ChatRequest",
    "ChatResult",
    "EnvSecretResolver",
    "PriceTable",
    "Provider",
    "ProviderRegistry",
    "SecretResolver",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
]


class ProviderRegistry:
    """One provider per (kind, base URL, secret), sharing one HTTP connection pool."""

    def __init__(self, secrets: SecretResolver, client: httpx.AsyncClient | None = None) -> None:
        self._secrets = secrets
        self._client = client or new_client()
        self._owns_client = client is None
        self._providers: dict[tuple[str, str, str | None], Provider] = {}
        self._demo = DemoProvider()

    def get(self, model: ModelConfig) -> Provider:
        if model.provider == "demo":
            return self._demo
        if model.provider == "anthropic":
            base_url = model.base_url or ANTHROPIC_URL
        elif model.provider in DEFAULT_BASE_URLS:
            base_url = model.base_url or DEFAULT_BASE_URLS[model.provider]
        else:
            raise ProviderError(f"unknown provider {model.provider!r}")
        key = (model.provider, base_url, model.api_key_secret)
        provider = self._providers.get(key)
        if provider is None:
            api_key = self._secrets.resolve(model.api_key_secret) if model.api_key_secret else None
            if model.provider == "anthropic":
                provider = AnthropicProvider(base_url, api_key, self._client)
            else:
                provider = OpenAIProvider(base_url, api_key, self._client, name=model.provider)
            self._providers[key] = provider
        return provider

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
