"""Provider keys are bound to the provider host they were stored for.

`PUT /api/v1/secrets/providers/{name}` records the host next to the key (secret
`providers/<name>/host`): the provider's own (`openai` → api.openai.com, `anthropic` →
api.anthropic.com) or the host of an explicit `base_url`, which needs the admin role. At
deploy time every agent the deployment carries is checked: a `spec.model.base_url` needs
the deployer to be an admin, and the host the model talks to must be the host its
`api_key_secret` is bound to (422 naming `spec.model.base_url`). The gateway checks the same
binding again at run time (gateways/providers/__init__.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import Forbidden, Invalid, NotFound
from control_plane.services import roles, workloads
from control_plane.services.principal import Principal
from control_plane.services.secrets import SecretStore, check_name
from policy.net.outbound import OutboundRefused, parse_target

# The base URL a model config without `base_url` talks to (as the gateway's providers).
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
}
# Keys stored without a base_url: the provider the key's name says.
KEY_DEFAULT_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}
ADMIN = "admin"


def host_secret(name: str) -> str:
    return f"providers/{check_name(name, 'provider')}/host"


def is_admin(principal: Principal) -> bool:
    try:
        return roles.role_within(ADMIN, principal.role)
    except KeyError:  # a role this control plane does not know grants nothing
        return False


def url_host(url: object, field: str, agent: str | None = None) -> str:
    """The host of a URL the gateway will fetch, or a 422 naming `field` (and the agent)."""
    try:
        return parse_target(url).host.rstrip(".").lower()
    except OutboundRefused as refused:
        where = f"agent {agent}: " if agent else ""
        detail: dict[str, Any] = {"field": field, "message": refused.message}
        if agent:
            detail["agent"] = agent
        raise Invalid(f"{field}: {where}{refused.message}", details=[detail]) from None


def _check_tool_urls(agent: str, spec: Mapping[str, Any]) -> None:
    """URL syntax of what the gateway will fetch (user@host, schemes, numeric IP forms);
    the addresses are judged by the gateway's guard when it connects."""
    for index, tool in enumerate(spec.get("tools") or []):
        if "http" in tool:
            url_host(tool["http"].get("url"), f"spec.tools[{index}].http.url", agent)
        elif "mcp" in tool:
            url_host(tool["mcp"].get("server_url"), f"spec.tools[{index}].mcp.server_url", agent)


def _provider_of(name: str) -> str | None:
    for provider in KEY_DEFAULT_HOSTS:
        if name == provider or name.startswith((f"{provider}-", f"{provider}_", f"{provider}.")):
            return provider
    return None


def key_host(principal: Principal, name: str, provider: str | None, base_url: str | None) -> str:
    """The host a key stored now under `name` is bound to: `base_url`'s (admin only), else
    the provider's (given, or what the name says)."""
    if base_url is not None:
        if not is_admin(principal):
            raise Forbidden(
                "base_url: binding a provider key to a custom base_url needs the admin role",
                details=[{"field": "base_url", "message": "needs the admin role"}],
            )
        return url_host(base_url, "base_url")
    provider = provider or _provider_of(name)
    if provider in KEY_DEFAULT_HOSTS:
        return KEY_DEFAULT_HOSTS[provider]
    message = (
        f"a key named {name!r} is for no known provider: give `provider` "
        f"({' or '.join(KEY_DEFAULT_HOSTS)}) or the base_url it is for"
    )
    raise Invalid(f"base_url: {message}", details=[{"field": "base_url", "message": message}])


async def bound_host(
    store: SecretStore, session: AsyncSession, organization_id: uuid.UUID, secret: str
) -> str | None:
    """The recorded host of the key `secret`; None for a key stored before hosts were
    recorded (or only in a gateway's environment): then the provider's own host applies."""
    try:
        return await store.get(organization_id, host_secret(secret), session=session)
    except NotFound:
        return None


async def _agent_configs(
    session: AsyncSession, kind: str, name: str, version: int, pins: Mapping[str, int]
) -> list[tuple[str, Mapping[str, Any]]]:
    wanted = dict(pins)
    if kind == "agent":
        wanted[name] = version
    configs: list[tuple[str, Mapping[str, Any]]] = []
    for agent, agent_version in sorted(wanted.items()):
        workload = await workloads.by_name(session, "agent", agent)
        if workload is None:  # deployments.create has already refused this
            continue
        row = await workloads.version_of(session, workload, agent_version)
        configs.append((agent, row.config))
    return configs


async def check_deployment(
    session: AsyncSession,
    store: SecretStore,
    principal: Principal,
    *,
    kind: str,
    name: str,
    version: int,
    pins: Mapping[str, int],
) -> None:
    """Refuse a deployment that would send a provider key to another host, or that sets a
    custom base_url without the deployer being an admin."""
    field = "spec.model.base_url"
    for agent, config in await _agent_configs(session, kind, name, version, pins):
        spec = config.get("spec") or {}
        _check_tool_urls(agent, spec)
        model = spec.get("model") or {}
        provider, base_url, secret = (
            model.get("provider"),
            model.get("base_url"),
            model.get("api_key_secret"),
        )
        if provider == "demo":
            continue
        if base_url is not None and not is_admin(principal):
            raise Forbidden(
                f"{field}: agent {agent} sets a custom base_url; deploying it needs the admin role",
                details=[{"field": field, "agent": agent, "message": "needs the admin role"}],
            )
        target = base_url or DEFAULT_BASE_URLS.get(str(provider))
        if target is None:
            continue
        actual = url_host(target, field, agent)
        if not secret:
            continue
        expected = await bound_host(store, session, principal.organization_id, secret)
        if expected is None:
            expected = url_host(DEFAULT_BASE_URLS.get(str(provider), target), field)
        if actual != expected:
            message = (
                f"agent {agent} would send the key {secret!r} (bound to {expected}) to {actual}"
            )
            raise Invalid(
                f"{field}: {message}",
                details=[{"field": field, "agent": agent, "message": message}],
            )
