"""The second factor guards itself: replacing an active TOTP needs the current one, and a
session from one organisation's SSO never enrols or replaces the TOTP of an account that
another organisation shares (that organisation's IdP would choose the factor guarding it)."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, Account
from tests.idp.dns_server import LocalDns
from tests.idp.oidc_provider import OidcProvider
from tests.integration.mfa_support import Clock, code, enrol
from tests.integration.sso_support import dns, dns_server
from tests.security.sso_attacks import (
    DOMAIN,
    actions,
    bearer,
    browser,
    callback,
    idp,
    member_of_other_org,
    org_with_idp,
    running_idp,
    sso_tokens,
)

__all__ = ["browser", "dns", "dns_server", "idp", "running_idp"]  # fixtures


async def _login(client: httpx.AsyncClient, email: str, totp: str | None = None) -> httpx.Response:
    body = {"email": email, "password": PASSWORD, **({"totp": totp} if totp else {})}
    return await client.post("/api/v1/auth/login", json=body)


async def test_replacing_totp_without_the_current_code_is_refused(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    old, _, _ = await enrol(client, owner.headers, clock)

    bare = await client.post("/api/v1/me/mfa/totp", headers=owner.headers)
    wrong = await client.post("/api/v1/me/mfa/totp", json={"code": "000000"}, headers=owner.headers)

    assert bare.status_code == 403, bare.text
    assert bare.json()["error"]["code"] == "current_factor_required"
    assert wrong.status_code == 401, wrong.text
    assert wrong.json()["error"]["code"] == "mfa_invalid"
    assert "mfa.totp.replace" not in await actions(client, owner)
    kept = await _login(client, owner.email, code(old, clock))
    assert kept.status_code == 200, kept.text  # the active factor is untouched
    clock.advance()

    started = await client.post(
        "/api/v1/me/mfa/totp", json={"code": code(old, clock)}, headers=owner.headers
    )
    assert started.status_code == 201, started.text
    new = started.json()["secret"]
    clock.advance()
    confirmed = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": code(new, clock)}, headers=owner.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert len(confirmed.json()["recovery_codes"]) == 10
    clock.advance()
    assert (await _login(client, owner.email, code(old, clock))).status_code == 401
    assert (await _login(client, owner.email, code(new, clock))).status_code == 200
    assert "mfa.totp.replace" in await actions(client, owner)


async def _linked_member_of_two_orgs(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> tuple[dict[str, object], str]:
    """An account of another organisation, linked (with its password) to `owner`'s IdP."""
    email = f"erin@{DOMAIN}"
    await member_of_other_org(client, email)
    created = await org_with_idp(client, owner, idp, dns)
    idp.user.email = email
    refused = await callback(client, browser, created)
    link_code = refused.json()["error"]["details"][0]["link_code"]
    linked = await client.post(
        "/api/v1/auth/sso/link", json={"link_code": link_code, "password": PASSWORD}
    )
    assert linked.status_code == 200, linked.text
    return created, email


async def test_sso_session_enrolling_another_organisations_members_totp_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
    clock: Clock,
) -> None:
    created, email = await _linked_member_of_two_orgs(client, owner, idp, dns, browser)
    tokens = await sso_tokens(client, browser, created)

    refused = await client.post("/api/v1/me/mfa/totp", headers=bearer(tokens))

    assert refused.status_code == 403, refused.text
    assert "member of another organisation" in refused.json()["error"]["message"]
    status = await client.get("/api/v1/me/mfa", headers=bearer(tokens))
    assert status.json()["totp_enabled"] is False
    assert (await _login(client, email)).status_code == 200  # still no second factor asked
    # The person, logged in with their own password, may enrol.
    own = await _login(client, email)
    await enrol(client, bearer(own.json()), clock)


async def test_sso_enrolment_token_for_another_organisations_member_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    created, email = await _linked_member_of_two_orgs(client, owner, idp, dns, browser)
    required = await client.put(
        "/api/v1/organization/mfa", json={"required_roles": ["developer"]}, headers=owner.headers
    )
    assert required.status_code == 200, required.text
    back = await callback(client, browser, created)
    sso_code = back.headers["location"].split("code=", 1)[1]
    asked = await client.post("/api/v1/auth/sso/exchange", json={"code": sso_code})
    assert asked.status_code == 403, asked.text
    token = asked.json()["error"]["details"]["enrolment_token"]

    refused = await client.post("/api/v1/me/mfa/totp", headers={"Authorization": f"Bearer {token}"})

    assert refused.status_code == 403, refused.text
    assert "member of another organisation" in refused.json()["error"]["message"]
    assert (await _login(client, email)).status_code == 200  # no TOTP was set on the account
