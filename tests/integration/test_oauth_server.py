"""The MCP authorization server over its HTTP API: metadata, registration, authorize with
PKCE S256 only, consent, audience-bound tokens, refresh rotation, revocation, blocking."""

from __future__ import annotations

import httpx
import jwt

from tests.conftest import Account, signup
from tests.integration.oauth_support import (
    REDIRECT,
    _path,
    authorize,
    enable_registration,
    exchange,
    query,
    register,
    s256,
)

GATEWAY_URL = "http://gw-a.test:10000"
RESOURCE = GATEWAY_URL + "/mcp"


async def _gateway(http: httpx.AsyncClient, owner: Account, name: str, url: str) -> None:
    created = await http.post(
        "/api/v1/gateways",
        json={"name": name, "environment": "dev", "url": url},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text


async def _ready(http: httpx.AsyncClient, owner: Account) -> tuple[str, str]:
    issuer = await enable_registration(http, owner.headers)
    await _gateway(http, owner, "gw-a", GATEWAY_URL)
    return issuer, await register(http, issuer)


async def test_metadata_names_the_issuer_and_s256_only(
    client: httpx.AsyncClient, owner: Account
) -> None:
    org = owner.organization_id
    answer = await client.get(f"/.well-known/oauth-authorization-server/oauth/{org}")
    assert answer.status_code == 200
    metadata = answer.json()
    assert metadata["issuer"].endswith(f"/oauth/{org}")
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "registration_endpoint" not in metadata  # off until the organisation turns it on
    oidc = await client.get(f"/.well-known/openid-configuration/oauth/{org}")
    assert oidc.json() == metadata
    unknown = await client.get(
        "/.well-known/oauth-authorization-server/oauth/00000000-0000-0000-0000-000000000000"
    )
    assert unknown.status_code == 404


async def test_registration_is_off_by_default_and_redirects_are_restricted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer = f"/oauth/{owner.organization_id}"
    body = {"client_name": "x", "redirect_uris": [REDIRECT]}
    refused = await client.post(f"{issuer}/register", json=body)
    assert refused.status_code == 400  # RFC 7591 §3.2.2
    assert refused.json()["error"] == "access_denied"
    await enable_registration(client, owner.headers)
    for uri in ("http://evil.example/cb", "javascript:alert(1)", "https://a.example/#frag"):
        bad = await client.post(
            f"{issuer}/register", json={"client_name": "x", "redirect_uris": [uri]}
        )
        assert bad.status_code == 400, (uri, bad.text)
    good = await client.post(
        f"{issuer}/register",
        json={**body, "token_endpoint_auth_method": "client_secret_post"},
    )
    assert good.status_code == 201
    assert good.json()["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in good.json()
    not_json = await client.post(f"{issuer}/register", content=b"[1]")
    assert not_json.status_code == 400


async def test_code_flow_gives_an_audience_bound_token_and_rotates_refresh(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer, client_id = await _ready(client, owner)
    got = await authorize(client, issuer, client_id, RESOURCE, owner.headers)
    assert got.redirect["iss"] == issuer
    answer = await exchange(client, issuer, client_id, got)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == issuer
    assert claims["client_id"] == client_id
    assert claims["sub"] == owner.user_id
    assert claims["scope"] == "mcp:connect mcp:list agents:invoke"
    # The code is single use.
    again = await exchange(client, issuer, client_id, got)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # Refresh rotates; the old refresh token, presented again, ends the grant.
    first = token["refresh_token"]
    refreshed = await client.post(
        f"{_path(issuer)}/token",
        data={"grant_type": "refresh_token", "refresh_token": first, "client_id": client_id},
    )
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()["refresh_token"]
    assert second != first
    reused = await client.post(
        f"{_path(issuer)}/token",
        data={"grant_type": "refresh_token", "refresh_token": first, "client_id": client_id},
    )
    assert reused.status_code == 400
    after = await client.post(
        f"{_path(issuer)}/token",
        data={"grant_type": "refresh_token", "refresh_token": second, "client_id": client_id},
    )
    assert after.status_code == 400, "a reused refresh token revokes the whole grant"
    assert (await client.get("/api/v1/oauth/grants", headers=owner.headers)).json() == []


async def test_pkce_must_be_s256_and_the_verifier_must_match(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer, client_id = await _ready(client, owner)
    for method in ("plain", ""):
        refused = await authorize(
            client, issuer, client_id, RESOURCE, owner.headers, code_challenge_method=method
        )
        assert refused.redirect["error"] == "invalid_request", refused.redirect
    no_challenge = await authorize(
        client, issuer, client_id, RESOURCE, owner.headers, code_challenge=""
    )
    assert no_challenge.redirect["error"] == "invalid_request"
    got = await authorize(client, issuer, client_id, RESOURCE, owner.headers)
    got.verifier = "wrong-" + got.verifier
    wrong = await exchange(client, issuer, client_id, got)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    got = await authorize(client, issuer, client_id, RESOURCE, owner.headers)
    missing = await exchange(client, issuer, client_id, got, code_verifier="")
    assert missing.status_code == 400


async def test_resource_must_be_one_of_the_organisations_gateways(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer, client_id = await _ready(client, owner)
    other = await signup(client, "Other")
    await _gateway(client, other, "theirs", "http://gw-b.test:10000")
    for resource in ("http://gw-b.test:10000/mcp", GATEWAY_URL, ""):
        got = await authorize(client, issuer, client_id, resource, owner.headers)
        assert got.redirect["error"] == "invalid_target", resource
    got = await authorize(client, issuer, client_id, RESOURCE, owner.headers)
    mismatch = await exchange(client, issuer, client_id, got, resource="http://gw-b.test:10000/mcp")
    assert mismatch.json()["error"] == "invalid_target"


async def test_unregistered_redirect_and_unknown_client_never_redirect(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer, client_id = await _ready(client, owner)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": "https://attacker.example/cb",
        "code_challenge": s256("x" * 43),
        "code_challenge_method": "S256",
        "resource": RESOURCE,
    }
    answer = await client.get(f"{_path(issuer)}/authorize", params=params)
    assert answer.status_code == 400
    unknown = await client.get(
        f"{_path(issuer)}/authorize", params={**params, "client_id": "mcp_nope"}
    )
    assert unknown.status_code == 400
    # Loopback redirects may change port (RFC 8252), nothing else.
    moved = await client.get(
        f"{_path(issuer)}/authorize",
        params={**params, "redirect_uri": "http://127.0.0.1:5555/callback"},
    )
    assert moved.status_code == 302


async def test_consent_is_the_organisations_and_a_persons(
    client: httpx.AsyncClient, owner: Account
) -> None:
    issuer, client_id = await _ready(client, owner)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": s256("y" * 43),
        "code_challenge_method": "S256",
        "resource": RESOURCE,
        "state": "s",
    }
    started = await client.get(f"{_path(issuer)}/authorize", params=params)
    request_id = query(started.headers["location"])["request"]
    stranger = await signup(client, "Stranger")
    seen = await client.get(f"/api/v1/oauth/requests/{request_id}", headers=stranger.headers)
    assert seen.status_code == 404
    taken = await client.post(
        f"/api/v1/oauth/requests/{request_id}", json={"approve": True}, headers=stranger.headers
    )
    assert taken.status_code == 404
    anonymous = await client.get(f"/api/v1/oauth/requests/{request_id}")
    assert anonymous.status_code == 401
    denied = await client.post(
        f"/api/v1/oauth/requests/{request_id}", json={"approve": False}, headers=owner.headers
    )
    assert query(denied.json()["redirect_to"])["error"] == "access_denied"
    used = await client.get(f"/api/v1/oauth/requests/{request_id}", headers=owner.headers)
    assert used.status_code == 404


async def test_users_revoke_and_admins_block(client: httpx.AsyncClient, owner: Account) -> None:
    issuer, client_id = await _ready(client, owner)
    got = await authorize(client, issuer, client_id, RESOURCE, owner.headers)
    token = (await exchange(client, issuer, client_id, got)).json()
    mine = (await client.get("/api/v1/oauth/grants", headers=owner.headers)).json()
    assert [g["client_id"] for g in mine] == [client_id]
    assert mine[0]["gateway"] == "gw-a"
    stranger = await signup(client, "Stranger")
    foreign = await client.delete(f"/api/v1/oauth/grants/{mine[0]['id']}", headers=stranger.headers)
    assert foreign.status_code == 404
    gone = await client.delete(f"/api/v1/oauth/grants/{mine[0]['id']}", headers=owner.headers)
    assert gone.status_code == 204
    refresh = await client.post(
        f"{_path(issuer)}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refresh.status_code == 400
    # An administrator blocks the client: new authorizations are refused.
    listed = (await client.get("/api/v1/oauth/clients", headers=owner.headers)).json()
    ref = listed["clients"][0]["id"]
    blocked = await client.put(
        f"/api/v1/oauth/clients/{ref}/blocked", json={"blocked": True}, headers=owner.headers
    )
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": s256("z" * 43),
        "code_challenge_method": "S256",
        "resource": RESOURCE,
    }
    refused = await client.get(f"{_path(issuer)}/authorize", params=params)
    assert refused.status_code == 400
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    actions = {e["action"] for e in events}
    assert {"oauth_grant.created", "oauth_grant.revoked", "oauth_client.blocked"} <= actions


async def test_token_endpoint_refuses_bad_bodies(client: httpx.AsyncClient, owner: Account) -> None:
    issuer = f"/oauth/{owner.organization_id}"
    as_json = await client.post(f"{issuer}/token", json={"grant_type": "authorization_code"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    unknown = await client.post(f"{issuer}/token", data={"grant_type": "password"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unsupported_grant_type"
