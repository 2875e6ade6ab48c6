"""An MCP client connecting by OAuth the standard way (the official SDK's
`OAuthClientProvider`), with the test playing the user's browser at the consent step: it
follows the authorization redirect and approves over the studio's consent API as the
logged-in user. Used by the M11 end-to-end test and by `up`'s tour test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from tests.integration.oauth_support import query


@dataclass
class Memory:
    """The SDK's TokenStorage, in memory."""

    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Browser:
    """What the user's browser and the studio do between the client's two handlers."""

    control_plane: str
    user: dict[str, str]
    shown: list[dict[str, Any]] = field(default_factory=list)
    result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            started = await http.get(authorization_url)
            assert started.status_code == 302, started.text
            consent = started.headers["location"]
            assert consent.startswith(f"{self.control_plane}/oauth-consent?")
            request_id = query(consent)["request"]
            api = f"{self.control_plane}/api/v1/oauth/requests/{request_id}"
            shown = await http.get(api, headers=self.user)
            assert shown.status_code == 200, shown.text
            self.shown.append(shown.json())
            decided = await http.post(api, json={"approve": True}, headers=self.user)
            assert decided.status_code == 200, decided.text
        answer = query(decided.json()["redirect_to"])
        self.result = AuthorizationCodeResult(
            code=answer["code"], state=answer.get("state"), iss=answer.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


async def connect(
    mcp_url: str, browser: Browser, storage: Memory, *, call: str, callback: str
) -> tuple[set[str], str]:
    """From nothing but `mcp_url`: discover, register, consent, list the tools, call `call`."""
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="E2E IDE",
            redirect_uris=[callback],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool(call, {"input": "hello over OAuth"})
        assert not result.is_error, result
        return tools, getattr(result.content[0], "text", "")
