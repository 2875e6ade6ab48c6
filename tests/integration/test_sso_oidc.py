"""OIDC single sign-on against a real local OpenID provider (Authlib's server side):
code flow with PKCE, JIT provisioning, group mapping, and the attacks the client must stop.
Also: email-domain routing, the provider admin API, and enforced SSO."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import PASSWORD, Account, Stack, member, signup
from tests.idp.dns_server import LocalDns
from tests.idp.oidc_provider import IdpUser, OidcProvider
from tests.integration.mfa_support import Clock, enrol
from tests.integration.plan_support import put_on
from tests.integration.sso_support import dns, dns_server, verify_domain

__all__ = ["dns", "dns_server"]  # fixtures

DOMAIN = "acme.example.com"
MAPPING = [
    {"group": "kaizen-admins", "role": "admin", "teams": ["sre"]},
    {"group": "kaizen-devs", "role": "developer", "teams": ["ml"]},
    {"group": "everyone", "teams": ["all-hands"]},
]


@pytest.fixture(scope="module")
def running_idp() -> Iterator[OidcProvider]:
    provider = OidcProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def idp(running_idp: OidcProvider) -> OidcProvider:
    running_idp.mode = "ok"
    running_idp.claims_patch = {}
    running_idp.groups_in_id_token = True
    running_idp.user = IdpUser(f"sub-{uuid.uuid4().hex[:6]}", f"dev@{DOMAIN}", ["kaizen-devs"])
    return running_idp


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """The user's browser at the IdP (a real HTTP client; redirects inspected, not followed)."""
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def _provider(
    client: httpx.AsyncClient, owner: Account, idp: OidcProvider, dns: LocalDns, **overrides: Any
) -> dict[str, Any]:
    """An OIDC provider of `owner`'s organisation, for DOMAIN (verified first, once)."""
    listed = (await client.get("/api/v1/domains", headers=owner.headers)).json()["items"]
    if DOMAIN not in [d["domain"] for d in listed if d["verified"]]:
        await verify_domain(client, owner, dns, DOMAIN)
    registration = idp.register("pending")
    body = {
        "type": "oidc",
        "name": "corp-idp",
        "email_domains": [DOMAIN],
        "issuer": idp.issuer,
        "client_id": registration.client_id,
        "client_secret": registration.client_secret,
        "group_mapping": MAPPING,
        **overrides,
    }
    response = await client.post("/api/v1/sso/providers", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    registration.redirect_uris[:] = [created["redirect_uri"]]
    return created


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def _to_callback(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: dict[str, Any]
) -> str:
    """Start the login and pass the IdP; returns the callback URL the IdP sends us to."""
    start = await client.get(f"/api/v1/auth/oidc/{provider['id']}/login")
    assert start.status_code == 302, start.text
    at_idp = await browser.get(start.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    callback = at_idp.headers["location"]
    assert callback.startswith(provider["redirect_uri"] + "?")
    return _path(callback)


async def _login(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: dict[str, Any]
) -> dict[str, Any]:
    back = await client.get(await _to_callback(client, browser, provider))
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith("/#/sso?code=")
    assert "access_token" not in location
    assert "refresh" not in location
    code = parse_qs(urlsplit(location.removeprefix("/#")).query)["code"][0]
    tokens = await client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert tokens.status_code == 200, tokens.text
    again = await client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert again.status_code == 401  # the code is single-use
    body: dict[str, Any] = tokens.json()
    return body


def _auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _team_members(client: httpx.AsyncClient, owner: Account) -> dict[str, list[str]]:
    teams = (await client.get("/api/v1/teams", headers=owner.headers)).json()["items"]
    return {t["name"]: t["member_ids"] for t in teams}


async def _actions(client: httpx.AsyncClient, owner: Account) -> list[str]:
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    return [e["action"] for e in events]


async def test_first_login_creates_the_member_with_the_mapped_role_and_teams(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    idp.user.groups = ["kaizen-devs", "everyone", "unmapped"]

    found = await client.get("/api/v1/auth/sso/discover", params={"email": f"Bob@{DOMAIN}"})
    assert found.status_code == 200, found.text
    assert found.json()["provider_id"] == provider["id"]
    assert found.json()["login_url"] == provider["login_url"]
    unknown = await client.get("/api/v1/auth/sso/discover", params={"email": "x@other.example"})
    assert unknown.status_code == 404

    tokens = await _login(client, browser, provider)
    request = idp.authorize_requests[-1]
    assert request["code_challenge_method"] == "S256"
    assert len(request["code_challenge"]) == 43
    assert request["nonce"]
    assert request["state"]

    me = (await client.get("/api/v1/me", headers=_auth(tokens))).json()
    assert me["label"] == f"dev@{DOMAIN}"
    assert me["role"] == "developer"
    assert me["organization_id"] == owner.organization_id
    teams = await _team_members(client, owner)
    assert teams["ml"] == [tokens["user_id"]]
    assert teams["all-hands"] == [tokens["user_id"]]
    assert "sre" not in teams  # only teams the user's groups map to are created
    actions = await _actions(client, owner)
    assert "sso.user.create" in actions
    assert "sso.login" in actions
    verify = await client.get("/api/v1/audit-events/verify", headers=owner.headers)
    assert verify.json()["valid"] is True


async def test_later_logins_follow_the_idp_groups(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    first = await _login(client, browser, provider)
    assert (await client.get("/api/v1/me", headers=_auth(first))).json()["role"] == "developer"

    idp.user.groups = ["kaizen-admins"]
    idp.groups_in_id_token = False  # groups now come from the userinfo endpoint
    second = await _login(client, browser, provider)
    assert second["user_id"] == first["user_id"]
    assert (await client.get("/api/v1/me", headers=_auth(second))).json()["role"] == "admin"
    teams = await _team_members(client, owner)
    assert teams["sre"] == [first["user_id"]]
    assert teams["ml"] == []
    actions = await _actions(client, owner)
    assert actions.count("sso.user.create") == 1
    assert "sso.role.change" in actions
    assert "sso.team.remove" in actions

    idp.user.groups = ["unmapped"]  # no default role: groups granting none are refused
    third = await client.get(await _to_callback(client, browser, provider))
    assert third.status_code == 403, third.text
    assert "grants a role" in third.json()["error"]["message"]


async def test_no_role_for_the_groups_refuses(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    idp.user.groups = ["unmapped"]
    back = await client.get(await _to_callback(client, browser, provider))
    assert back.status_code == 403, back.text
    users = (await client.get("/api/v1/users", headers=owner.headers)).json()["items"]
    assert [u["email"] for u in users] == [owner.email]


async def test_jit_provisioning_past_the_plans_user_limit_is_refused(
    client: httpx.AsyncClient,
    stack: Stack,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    await put_on(stack, owner.organization_id, "free")
    await member(client, owner, "viewer")
    await member(client, owner, "viewer")  # three of Free's three
    back = await client.get(await _to_callback(client, browser, provider))
    assert back.status_code == 402, back.text
    error = back.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"][0] | {"field": "users"} == {
        "field": "users",
        "limit": "users",
        "plan": "free",
        "allowed": 3,
        "count": 3,
    }
    users = (await client.get("/api/v1/users", headers=owner.headers)).json()["items"]
    assert len(users) == 3
    assert f"dev@{DOMAIN}" not in [u["email"] for u in users]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("bad_signature", "ID token rejected: bad_signature"),
        ("wrong_audience", "ID token rejected: Invalid claim: 'aud'"),
        ("wrong_nonce", "ID token rejected: Invalid claim: 'nonce'"),
    ],
)
async def test_forged_or_misdirected_id_tokens_are_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
    mode: str,
    message: str,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    idp.mode = mode
    back = await client.get(await _to_callback(client, browser, provider))
    assert back.status_code == 401, back.text
    assert message in back.json()["error"]["message"]
    users = (await client.get("/api/v1/users", headers=owner.headers)).json()["items"]
    assert [u["email"] for u in users] == [owner.email]


async def test_state_is_single_use_and_bound_to_its_provider(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    callback = await _to_callback(client, browser, provider)
    assert (await client.get(callback)).status_code == 302
    replayed = await client.get(callback)
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["error"]["message"]

    other = await _provider(client, owner, idp, dns, name="second-idp", email_domains=[])
    fresh = await _to_callback(client, browser, provider)
    crossed = await client.get(fresh.replace(provider["id"], other["id"]))
    assert crossed.status_code == 401
    forged = await client.get(f"/api/v1/auth/oidc/{provider['id']}/callback?code=x&state=made-up")
    assert forged.status_code == 401


async def test_an_address_outside_the_providers_domains_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    idp.user.email = "mallory@elsewhere.example.org"
    back = await client.get(await _to_callback(client, browser, provider))
    assert back.status_code == 403, back.text


async def test_provider_admin_api(
    client: httpx.AsyncClient, owner: Account, idp: OidcProvider, dns: LocalDns
) -> None:
    provider = await _provider(client, owner, idp, dns)
    secret = idp.clients[provider["client_id"]].client_secret
    fetched = await client.get(f"/api/v1/sso/providers/{provider['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json()["has_client_secret"] is True
    listed = await client.get("/api/v1/sso/providers", headers=owner.headers)
    audit = await client.get("/api/v1/audit-events", headers=owner.headers)
    for response in (fetched, listed, audit):
        assert secret not in response.text

    developer = await member(client, owner, "developer")
    denied = await client.get("/api/v1/sso/providers", headers=developer.headers)
    assert denied.status_code == 403

    missing = await client.post(
        "/api/v1/sso/providers",
        json={"type": "oidc", "name": "x", "issuer": idp.issuer},
        headers=owner.headers,
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["field"] == "client_id"
    plain_http = await client.post(
        "/api/v1/sso/providers",
        json={"type": "oidc", "name": "x", "issuer": "http://idp.example.com", "client_id": "c"},
        headers=owner.headers,
    )
    assert plain_http.status_code == 422
    assert plain_http.json()["error"]["details"][0]["field"] == "issuer"
    owner_role = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "oidc",
            "name": "x",
            "issuer": idp.issuer,
            "client_id": "c",
            "group_mapping": [{"group": "g", "role": "owner"}],
        },
        headers=owner.headers,
    )
    assert owner_role.status_code == 422

    defaulted = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "oidc",
            "name": "x",
            "issuer": idp.issuer,
            "client_id": "c",
            "default_role": "viewer",
        },
        headers=owner.headers,
    )
    assert defaulted.status_code == 422  # there is no default role
    assert defaulted.json()["error"]["details"][0]["field"] == "default_role"

    rival = await signup(client, "Rival")
    claimed = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "oidc",
            "name": "mine",
            "issuer": idp.issuer,
            "client_id": "c",
            "email_domains": [DOMAIN],
        },
        headers=rival.headers,
    )
    assert claimed.status_code == 422  # routes only domains its organisation verified
    assert claimed.json()["error"]["details"][0]["field"] == "email_domains"
    assert DOMAIN in claimed.json()["error"]["message"]

    renamed = await client.patch(
        f"/api/v1/sso/providers/{provider['id']}",
        json={"enabled": False, "client_secret": "rotated-secret"},
        headers=owner.headers,
    )
    assert renamed.status_code == 200, renamed.text
    assert "rotated-secret" not in renamed.text
    disabled = await client.get(f"/api/v1/auth/oidc/{provider['id']}/login")
    assert disabled.status_code == 404
    deleted = await client.delete(f"/api/v1/sso/providers/{provider['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    actions = await _actions(client, owner)
    assert {"sso.provider.create", "sso.provider.update", "sso.provider.delete"} <= set(actions)


async def test_enforced_sso_blocks_passwords_except_the_break_glass_owner(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    developer = await member(client, owner, "developer")
    second_owner = await member(client, owner, "owner")
    early = await client.put(
        "/api/v1/sso/settings", json={"sso_required": True}, headers=owner.headers
    )
    assert early.status_code == 422  # no provider yet
    assert early.json()["error"]["details"][0]["field"] == "sso_required"
    provider = await _provider(client, owner, idp, dns)
    not_owner = await client.put(
        "/api/v1/sso/settings",
        json={"sso_required": True, "break_glass_user_ids": [developer.user_id]},
        headers=owner.headers,
    )
    assert not_owner.status_code == 422
    required = await client.put(
        "/api/v1/sso/settings",
        json={"sso_required": True, "break_glass_user_ids": [owner.user_id]},
        headers=owner.headers,
    )
    assert required.status_code == 200, required.text

    for account in (developer, second_owner):
        refused = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
        )
        assert refused.status_code == 403, refused.text
        assert "SSO" in refused.json()["error"]["message"]
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": developer.email, "password": "not the password"}
    )
    assert wrong.status_code == 401  # the SSO rule is no oracle for passwords
    glass = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert glass.status_code == 200, glass.text
    assert (await _login(client, browser, provider))["organization_id"] == owner.organization_id
    assert "sso.settings.update" in await _actions(client, owner)

    relaxed = await client.put(
        "/api/v1/sso/settings", json={"sso_required": False}, headers=owner.headers
    )
    assert relaxed.status_code == 200
    back = await client.post(
        "/api/v1/auth/login", json={"email": developer.email, "password": PASSWORD}
    )
    assert back.status_code == 200


async def test_a_member_with_totp_is_asked_for_it_after_the_idp(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
    clock: Clock,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    first = await _login(client, browser, provider)
    _secret, recovery, _ = await enrol(client, _auth(first), clock)

    back = await client.get(await _to_callback(client, browser, provider))
    code = parse_qs(urlsplit(back.headers["location"].removeprefix("/#")).query)["code"][0]
    asked = await client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert asked.status_code == 401, asked.text
    assert asked.json()["error"]["code"] == "mfa_required"
    retry = asked.json()["error"]["details"][0]["retry_code"]
    assert retry != code

    wrong = await client.post("/api/v1/auth/sso/exchange", json={"code": retry, "totp": "000000"})
    assert wrong.json()["error"]["code"] == "mfa_invalid"
    retry = wrong.json()["error"]["details"][0]["retry_code"]
    tokens = await client.post(
        "/api/v1/auth/sso/exchange", json={"code": retry, "totp": recovery[0]}
    )
    assert tokens.status_code == 200, tokens.text
    me = await client.get("/api/v1/me", headers=_auth(tokens.json()))
    assert me.json()["label"] == f"dev@{DOMAIN}"
