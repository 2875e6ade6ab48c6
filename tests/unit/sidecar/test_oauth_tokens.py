"""MCP clients' OAuth tokens at the sidecar: accepted only at the gateway they were issued
for (exact `aud`, this organisation's issuer, RFC 9068 `typ`), only on /mcp, narrowed by
their scopes; every 401 on /mcp names the RFC 9728 metadata, a missing scope is a 403
`insufficient_scope` naming it."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from authz_sidecar.authn import AuthenticationError
from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import InMemoryBudgetLedger, InMemoryReservationBook
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.mapping import HttpFacts
from policy.bundles.bundle import VerifiedBundle, load_bundle
from policy.bundles.gateway_binding import binding_of_credential
from tests.unit.sidecar.factory import (
    ALICE,
    AUDIENCE,
    GATEWAY_TOKEN,
    ISSUER,
    ORG,
    Keys,
    make_bundle,
    make_keys,
)

RESOURCE = "https://gw-a.example.com/mcp"
OTHER_RESOURCE = "https://gw-b.example.com/mcp"
OTHER_GATEWAY_TOKEN = "kgw_the_other_gateway_credential"
CONTROL_PLANE = "https://cp.example.com"
OAUTH_ISSUER = f"{CONTROL_PLANE}/oauth/{ORG}"
METADATA = "https://gw-a.example.com/.well-known/oauth-protected-resource/mcp"
LIST = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
CALL = json.dumps(
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x", "arguments": {}}}
).encode()


def mcp_token(keys: Keys, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": OAUTH_ISSUER,
        "aud": RESOURCE,
        "sub": "u-1",
        "org": ORG,
        "sid": "oauth-s1",
        "client_id": "mcp_client_1",
        "scope": "mcp:connect mcp:list agents:invoke",
        "email": ALICE,
        "role": "agent-user",
        "teams": [],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"kid": keys.kid, "typ": "at+jwt"}
    return jwt.encode(claims, keys.private, algorithm="EdDSA", headers=header)


def bundle_naming(keys: Keys, resources: dict[str, str]) -> VerifiedBundle:
    """A signed bundle whose `mcp_resources` is `resources` (binding → MCP URL)."""
    return load_bundle(make_bundle(keys, mcp_resources=resources), keys.jwks, scope=ORG)


def authorizer_for(bundle: VerifiedBundle, credential: str = GATEWAY_TOKEN) -> Authorizer:
    holder = EngineHolder(
        InMemoryBudgetLedger(),
        issuer=ISSUER,
        audience=AUDIENCE,
        gateway_binding=binding_of_credential(credential),
        oauth_issuer=CONTROL_PLANE,
    )
    holder.on_bundle(bundle)
    return Authorizer(
        holder, replay_guard=InMemoryReplayGuard(), reservations=InMemoryReservationBook()
    )


@pytest.fixture
def authorizer(keys: Keys) -> Authorizer:
    """This gateway's sidecar: the bundle names its MCP URL and another gateway's."""
    return authorizer_for(
        bundle_naming(
            keys,
            {
                binding_of_credential(GATEWAY_TOKEN): RESOURCE,
                binding_of_credential(OTHER_GATEWAY_TOKEN): OTHER_RESOURCE,
            },
        )
    )


def facts(token: str | None, body: bytes = LIST, path: str = "/mcp") -> HttpFacts:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return HttpFacts("POST", path, {**headers, "content-type": "application/json"}, body)


def test_a_token_for_this_gateway_is_the_user_with_the_client_and_scopes(
    authorizer: Authorizer, keys: Keys
) -> None:
    snapshot = authorizer.holder.current
    assert snapshot is not None
    principal = snapshot.authenticator.authenticate(f"Bearer {mcp_token(keys)}")
    assert principal["id"] == f"user:{ALICE}"
    assert principal["attributes"]["oauth_client"] == "mcp_client_1"
    assert principal["attributes"]["scopes"] == ["mcp:connect", "mcp:list", "agents:invoke"]


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "https://gw-b.example.com/mcp"}, "audience"),
        ({"aud": None}, "aud"),
        ({"aud": [RESOURCE, "https://gw-b.example.com/mcp"]}, "audience"),
        ({"aud": AUDIENCE}, "audience"),
        ({"iss": f"{CONTROL_PLANE}/oauth/another-org"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"client_id": None}, "client_id"),
        ({"scope": ""}, "no scope"),
    ],
)
async def test_wrong_tokens_are_401_naming_the_metadata(
    authorizer: Authorizer, keys: Keys, overrides: dict[str, Any], why: str
) -> None:
    verdict = await authorizer.check(facts(mcp_token(keys, **overrides)))
    assert verdict.status == 401
    assert why in verdict.reasons[0]
    assert verdict.challenge is not None
    assert f'resource_metadata="{METADATA}"' in verdict.challenge
    assert 'error="invalid_token"' in verdict.challenge


async def test_a_token_signed_by_an_unknown_key_is_401(authorizer: Authorizer) -> None:
    stranger = make_keys("someone-elses-key")
    verdict = await authorizer.check(facts(mcp_token(stranger)))
    assert verdict.status == 401
    assert verdict.challenge is not None
    assert "resource_metadata" in verdict.challenge


async def test_no_credential_is_401_with_metadata_and_no_error_code(
    authorizer: Authorizer,
) -> None:
    verdict = await authorizer.check(facts(None))
    assert verdict.status == 401
    assert verdict.challenge == f'Bearer realm="kaizen", resource_metadata="{METADATA}"'


async def test_an_mcp_token_is_not_for_the_http_api(authorizer: Authorizer, keys: Keys) -> None:
    verdict = await authorizer.check(facts(mcp_token(keys), b"{}", "/v1/agents/x/invoke"))
    assert verdict.status == 401
    assert "only for /mcp" in verdict.reasons[0]


async def test_a_missing_scope_is_403_insufficient_scope(
    authorizer: Authorizer, keys: Keys
) -> None:
    narrow = mcp_token(keys, scope="mcp:connect mcp:list")
    verdict = await authorizer.check(facts(narrow, CALL))
    assert verdict.status == 403
    assert verdict.challenge is not None
    assert 'error="insufficient_scope"' in verdict.challenge
    assert 'scope="agents:invoke"' in verdict.challenge


def test_without_a_resource_url_oauth_tokens_are_refused(
    verified: VerifiedBundle, keys: Keys
) -> None:
    holder = EngineHolder(InMemoryBudgetLedger(), issuer=ISSUER, audience=AUDIENCE)
    holder.on_bundle(verified)
    assert holder.current is not None
    with pytest.raises(AuthenticationError, match="no MCP resource URL"):
        holder.current.authenticator.authenticate(f"Bearer {mcp_token(keys)}")


def _authenticate(authorizer: Authorizer, token: str) -> Any:
    snapshot = authorizer.holder.current
    assert snapshot is not None
    return snapshot.authenticator.authenticate(f"Bearer {token}")


def test_each_sidecar_takes_its_own_audience_from_the_signed_bundle(keys: Keys) -> None:
    """Two gateways' sidecars over one bundle: each accepts only the token for its own MCP
    URL, found under its own credential's binding; nothing is configured per sidecar."""
    both = bundle_naming(
        keys,
        {
            binding_of_credential(GATEWAY_TOKEN): RESOURCE,
            binding_of_credential(OTHER_GATEWAY_TOKEN): OTHER_RESOURCE,
        },
    )
    ours, theirs = authorizer_for(both), authorizer_for(both, OTHER_GATEWAY_TOKEN)
    assert _authenticate(ours, mcp_token(keys))["id"] == f"user:{ALICE}"
    assert _authenticate(theirs, mcp_token(keys, aud=OTHER_RESOURCE))["id"] == f"user:{ALICE}"
    with pytest.raises(AuthenticationError, match="audience"):
        _authenticate(theirs, mcp_token(keys))
    with pytest.raises(AuthenticationError, match="audience"):
        _authenticate(ours, mcp_token(keys, aud=OTHER_RESOURCE))


def test_a_bundle_that_does_not_name_this_gateway_accepts_no_oauth_token(keys: Keys) -> None:
    """A rotated credential (the bundle names the new binding) or a gateway the bundle does
    not know: no audience is ours, so every OAuth token is refused."""
    others_only = bundle_naming(keys, {binding_of_credential(OTHER_GATEWAY_TOKEN): RESOURCE})
    with pytest.raises(AuthenticationError, match="no MCP resource URL"):
        _authenticate(authorizer_for(others_only), mcp_token(keys))
