"""Identity across tenants: an organisation's SSO provider never signs in, links or changes
another organisation's member, provisions only addresses of domains its organisation proved
by DNS, and attaches an existing account only with proof. Through the real local OIDC
provider (Authlib) and a real local DNS server (dnslib)."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, Account, signup
from tests.idp.dns_server import LocalDns
from tests.idp.oidc_provider import OidcProvider
from tests.integration.sso_support import claim_domain, dns, dns_server, verify_domain
from tests.security.sso_attacks import (
    DOMAIN,
    actions,
    bearer,
    browser,
    callback,
    emails,
    idp,
    member_of_other_org,
    org_with_idp,
    provider,
    running_idp,
    sso_tokens,
)

__all__ = ["browser", "dns", "dns_server", "idp", "running_idp"]  # fixtures


async def test_provider_signing_in_another_organisations_member_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    victim_email = f"bob@{DOMAIN}"
    other, victim_id = await member_of_other_org(client, victim_email, role="admin")
    created = await org_with_idp(client, owner, idp, dns)
    idp.user.email, idp.user.groups = victim_email, ["admins"]

    refused = await callback(client, browser, created)

    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "sso_link_required"
    assert "member of another organisation" in error["message"]
    assert await emails(client, owner) == [owner.email]  # not signed in, not provisioned
    assert "sso.link" not in await actions(client, owner)
    victim = await client.get(f"/api/v1/users/{victim_id}", headers=other.headers)
    assert victim.json()["role"] == "admin"  # not changed
    login = await client.post(
        "/api/v1/auth/login", json={"email": victim_email, "password": PASSWORD}
    )
    assert login.status_code == 200
    assert login.json()["organization_id"] == other.organization_id


async def test_provisioning_by_a_provider_without_verified_domains_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    browser: httpx.AsyncClient,
) -> None:
    created = await provider(client, owner, idp)  # lists no domains: that is not "any"

    refused = await callback(client, browser, created)

    assert refused.status_code == 403, refused.text
    assert "not verified by this organisation" in refused.json()["error"]["message"]
    assert await emails(client, owner) == [owner.email]


async def test_an_unverified_domain_claim_granting_anything_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    claimed = await claim_domain(client, owner, DOMAIN)
    dns.set_txt(DOMAIN, "kaizen-studio-verification=someone-elses-token")
    attempt = await client.post(f"/api/v1/domains/{claimed['id']}/verify", headers=owner.headers)
    assert attempt.status_code == 422, attempt.text
    assert claimed["txt_value"] in attempt.json()["error"]["message"]
    assert DOMAIN in dns.queries  # looked up through the real resolver

    routed = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "oidc",
            "name": "claims-only",
            "issuer": idp.issuer,
            "client_id": "c",
            "email_domains": [DOMAIN],
        },
        headers=owner.headers,
    )
    assert routed.status_code == 422, routed.text
    assert routed.json()["error"]["details"][0]["field"] == "email_domains"
    created = await provider(client, owner, idp)
    refused = await callback(client, browser, created)
    assert refused.status_code == 403, refused.text
    assert await emails(client, owner) == [owner.email]
    found = await client.get("/api/v1/auth/sso/discover", params={"email": f"x@{DOMAIN}"})
    assert found.status_code == 404
    listed = await client.get("/api/v1/domains", headers=owner.headers)
    assert [d["verified"] for d in listed.json()["items"]] == [False]


async def test_claiming_a_domain_another_organisation_verified_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    dns: LocalDns,
) -> None:
    rival = await signup(client, "Rival")
    rival_claim = await claim_domain(client, rival, DOMAIN)  # first to claim wins nothing
    await verify_domain(client, owner, dns, DOMAIN)
    # Even with its own token published too, the rival cannot verify the domain any more.
    dns.set_txt(DOMAIN, rival_claim["txt_value"])

    second = await client.post(f"/api/v1/domains/{rival_claim['id']}/verify", headers=rival.headers)

    assert second.status_code == 409, second.text
    assert (
        f"{DOMAIN} is already verified by another organisation" in second.json()["error"]["message"]
    )
    again = await client.post("/api/v1/domains", json={"domain": DOMAIN}, headers=rival.headers)
    assert again.status_code == 409
    mine = await client.get("/api/v1/domains", headers=owner.headers)
    theirs = await client.get("/api/v1/domains", headers=rival.headers)
    assert [d["verified"] for d in mine.json()["items"]] == [True]
    assert [d["verified"] for d in theirs.json()["items"]] == [False]


async def test_claiming_a_shared_mail_domain_is_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    refused = await client.post(
        "/api/v1/domains", json={"domain": "gmail.com"}, headers=owner.headers
    )
    assert refused.status_code == 422
    assert "gmail.com" in refused.json()["error"]["message"]
    assert (await client.get("/api/v1/domains", headers=owner.headers)).json()["items"] == []


async def test_linking_an_existing_account_without_proof_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    victim_email = f"carol@{DOMAIN}"
    await member_of_other_org(client, victim_email)
    created = await org_with_idp(client, owner, idp, dns)
    idp.user.email = victim_email

    refused = await callback(client, browser, created)
    assert refused.status_code == 403, refused.text
    details = refused.json()["error"]["details"][0]
    wrong = await client.post(
        "/api/v1/auth/sso/link",
        json={"link_code": details["link_code"], "password": "not the password"},
    )

    assert wrong.status_code == 401, wrong.text
    assert "wrong password" in wrong.json()["error"]["message"]
    assert await emails(client, owner) == [owner.email]
    assert "sso.link" not in await actions(client, owner)
    still = await callback(client, browser, created)  # no link was made
    assert still.status_code == 403


async def test_linking_an_existing_account_with_its_password_links_it(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    email = f"dave@{DOMAIN}"
    _, dave_id = await member_of_other_org(client, email)
    created = await org_with_idp(client, owner, idp, dns)
    idp.user.email = email
    refused = await callback(client, browser, created)
    link_code = refused.json()["error"]["details"][0]["link_code"]

    linked = await client.post(
        "/api/v1/auth/sso/link", json={"link_code": link_code, "password": PASSWORD}
    )

    assert linked.status_code == 200, linked.text
    assert linked.json()["user_id"] == dave_id
    assert linked.json()["organization_id"] == owner.organization_id
    reused = await client.post(
        "/api/v1/auth/sso/link", json={"link_code": link_code, "password": PASSWORD}
    )
    assert reused.status_code == 401  # the link code is single-use
    assert await emails(client, owner) == sorted([owner.email, email])
    assert "sso.link" in await actions(client, owner)
    tokens = await sso_tokens(client, browser, created)  # the IdP now signs the account in
    assert tokens["user_id"] == dave_id
    me = await client.get("/api/v1/me", headers=bearer(tokens))
    assert me.json()["organization_id"] == owner.organization_id


async def test_jit_provisioning_without_a_role_mapping_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    await verify_domain(client, owner, dns, DOMAIN)
    created = await provider(
        client, owner, idp, email_domains=[DOMAIN], group_mapping=[{"group": "staff"}]
    )
    defaulted = await client.patch(
        f"/api/v1/sso/providers/{created['id']}",
        json={"default_role": "viewer"},
        headers=owner.headers,
    )
    assert defaulted.status_code == 422  # there is no default role to fall back on
    assert defaulted.json()["error"]["details"][0]["field"] == "default_role"

    refused = await callback(client, browser, created)

    assert refused.status_code == 403, refused.text
    assert "just-in-time provisioning is off" in refused.json()["error"]["message"]
    assert await emails(client, owner) == [owner.email]


async def test_provider_signing_in_its_user_after_they_joined_another_organisation_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    created = await org_with_idp(client, owner, idp, dns)
    first = await sso_tokens(client, browser, created)  # JIT: linked without a password
    other = await signup(client, "Other")
    joined = await client.post(
        "/api/v1/users", json={"email": idp.user.email, "role": "viewer"}, headers=other.headers
    )
    assert joined.status_code == 201, joined.text
    idp.user.groups = ["admins"]  # what the IdP would now change

    refused = await callback(client, browser, created)

    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "sso_link_required"
    assert "member of another organisation" in error["message"]
    assert "details" not in error  # no password to prove the account with: no link code
    me = await client.get("/api/v1/users", headers=owner.headers)
    roles = {u["id"]: u["role"] for u in me.json()["items"]}
    assert roles[first["user_id"]] == "developer"  # not changed
