"""LLM providers: OpenAI-compatible, Anthropic and the offline demo; `ProviderRegistry`
builds (and reuses) the one a model config names, with credentials from a SecretResolver.

A provider key goes only to the host it is bound to (`SecretResolver.bound_host`: the host
recorded when the key was stored, else the provider's own — api.openai.com,
api.anthropic.com, or the local default of vLLM/Ollama/LM Studio); a model config whose
`base_url` names another host is refused before any request is built. Every provider
request goes through the outbound guard (a `GuardedSession`, policy/net/outbound_aiohttp.py)."""

from __future__ import annotations

import httpx
from policy.net.outbound import OutboundGuard, OutboundRefused, parse_target
from policy.net.outbound_aiohttp import GuardedSession
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
from gateways.providers.http import outbound_client
from gateways.providers.openai import DEFAULT_BASE_URLS, OpenAIProvider
from gateways.providers.prices import PriceTable
from gateways.providers.secrets import EnvSecretResolver, SecretResolver
from gateways.providers.tenant_secrets import TenantSecrets

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


def default_base_url(provider: str) -> str:
    if provider == "anthropic":
        return ANTHROPIC_URL
    if provider in DEFAULT_BASE_URLS:
        return DEFAULT_BASE_URLS[provider]
    raise ProviderError(f"unknown provider {provider!r}")


def _host(url: str) -> str:
    try:
        return parse_target(url).host.rstrip(".")
    except OutboundRefused as refused:
        raise ProviderError(f"base_url refused: {refused.message}") from None


def check_key_binding(model: ModelConfig, base_url: str, bound_host: str | None) -> None:
    """Refuse to send the key `model.api_key_secret` anywhere but the host it is bound to."""
    expected = (bound_host or _host(default_base_url(model.provider))).lower().rstrip(".")
    actual = _host(base_url)
    if actual != expected:
        raise ProviderError(
            f"secret {model.api_key_secret!r} is bound to host {expected}; refusing to send it "
            f"to {actual} (spec.model.base_url)"
        )


class ProviderRegistry:
    """One provider per (kind, base URL, secret), sharing one guarded aiohttp connection
    pool (`session`); `http` is the guarded httpx client of the executor's HTTP tools.

    On a shared gateway (`tenants` given) a provider key is always the one of the
    organisation `get` is called for — the decision's — read from that organisation's own
    store, and each provider built with a key is kept under that organisation only."""

    def __init__(
        self,
        secrets: SecretResolver,
        guard: OutboundGuard | None = None,
        *,
        tenants: TenantSecrets | None = None,
    ) -> None:
        self._secrets = secrets
        self._tenants = tenants
        self.guard = guard or OutboundGuard()  # no allowance: public addresses only
        self.session = GuardedSession(self.guard)
        self.http: httpx.AsyncClient = outbound_client(self.guard)
        self._providers: dict[tuple[str | None, str, str, str | None], Provider] = {}
        self._demo = DemoProvider()

    @property
    def secrets(self) -> SecretResolver:
        return self._secrets

    def secrets_for(self, organization: str | None) -> SecretResolver:
        """Whose keys a call may use: the gateway's own, or on a shared gateway the
        organisation's named by the call's verified decision (never a fallback)."""
        if self._tenants is None:
            return self._secrets
        if not organization:
            raise ProviderError("no organisation named: a shared gateway has no own keys")
        return self._tenants.for_organization(organization)

    def get(self, model: ModelConfig, organization: str | None = None) -> Provider:
        if model.provider == "demo":
            return self._demo
        base_url = model.base_url or default_base_url(model.provider)
        owner = organization if self._tenants is not None else None
        key = (owner, model.provider, base_url, model.api_key_secret)
        provider = self._providers.get(key)
        api_key = None
        if model.api_key_secret:
            secrets = self.secrets_for(organization)
            if provider is None:  # a missing key says so before anything is checked
                api_key = secrets.resolve(model.api_key_secret)
            # Defence in depth behind the control plane's deploy-time check: a bundle or a
            # Vault entry that disagrees still never gets the key sent elsewhere.
            check_key_binding(model, base_url, secrets.bound_host(model.api_key_secret))
        if provider is None:
            if model.provider == "anthropic":
                provider = AnthropicProvider(base_url, api_key, self.session)
            else:
                provider = OpenAIProvider(base_url, api_key, self.session, name=model.provider)
            self._providers[key] = provider
        return provider

    async def aclose(self) -> None:
        await self.session.close()
        await self.http.aclose()
