"""SAML assertions and OIDC ID tokens that are validly signed by the organisation's own IdP
but wrong in one respect: meant for another audience, another destination or recipient,
another login, expired, or issued for another organisation's provider. Each is refused
with nothing created, through the real login flow against the local IdPs of tests/idp
(pysaml2 signing with xmlsec1; Authlib's authorization server). Each test first shows the
untouched answer signing in, so a refusal is the check under test and not a broken setup.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lxml import etree

from tests.conftest import Account, signup
from tests.idp.dns_server import LocalDns
from tests.idp.oidc_provider import DROP, OidcProvider
from tests.idp.saml_idp import SAML, SamlIdp
from tests.integration.sso_support import dns, dns_server, verify_domain
from tests.security.sso_attacks import (
    DOMAIN,
    browser,
    callback,
    emails,
    idp,
    org_with_idp,
    running_idp,
)

__all__ = ["browser", "dns", "dns_server", "idp", "running_idp"]  # fixtures

SAML_DOMAIN = "saml-corp.example.net"
OTHER_DOMAIN = "other-corp.example.net"
EVIL = "https://evil.example.org/saml/acs"
Tamper = Callable[[etree._Element], None]


# -- SAML ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_saml_idp() -> Iterator[SamlIdp]:
    saml_idp = SamlIdp()
    yield saml_idp
    saml_idp.close()


@pytest.fixture
def saml_idp(running_saml_idp: SamlIdp) -> SamlIdp:
    running_saml_idp.sign, running_saml_idp.key, running_saml_idp.lifetime_minutes = (
        True,
        "good",
        5,
    )
    running_saml_idp.email, running_saml_idp.groups = f"dev@{SAML_DOMAIN}", ["devs"]
    return running_saml_idp


async def _saml_provider(
    client: httpx.AsyncClient, owner: Account, saml_idp: SamlIdp, dns: LocalDns, domain: str
) -> dict[str, Any]:
    await verify_domain(client, owner, dns, domain)
    created = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "saml",
            "name": f"saml-{domain.split('.')[0]}",
            "email_domains": [domain],
            "saml_idp_metadata": saml_idp.metadata(),
            "group_mapping": [{"group": "devs", "role": "developer"}],
        },
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    provider: dict[str, Any] = created.json()
    metadata = await client.get(f"/api/v1/auth/saml/{provider['id']}/metadata")
    saml_idp.trust_sp(metadata.text)
    return provider


async def _login_url(client: httpx.AsyncClient, provider: dict[str, Any]) -> str:
    start = await client.get(f"/api/v1/auth/saml/{provider['id']}/login")
    assert start.status_code == 302, start.text
    location: str = start.headers["location"]
    return location


async def _acs(
    client: httpx.AsyncClient, provider: dict[str, Any], saml_response: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/auth/saml/{provider['id']}/acs", data={"SAMLResponse": saml_response}
    )


def _confirmations(document: etree._Element) -> list[etree._Element]:
    found = list(document.iterfind(".//saml:SubjectConfirmationData", SAML))
    assert found, "the IdP's assertion has no SubjectConfirmationData"
    return found


def _audience(document: etree._Element) -> None:
    audiences = list(document.iterfind(".//saml:AudienceRestriction/saml:Audience", SAML))
    assert audiences
    for audience in audiences:
        audience.text = "https://evil.example.org/saml/metadata"


def _destination(document: etree._Element) -> None:
    document.set("Destination", EVIL)


def _recipient(document: etree._Element) -> None:
    for data in _confirmations(document):
        data.set("Recipient", EVIL)


def _confirmation_in_response_to(document: etree._Element) -> None:
    for data in _confirmations(document):
        data.set("InResponseTo", "id-a-login-we-never-started")


def _response_in_response_to(document: etree._Element) -> None:
    document.set("InResponseTo", "id-a-login-we-never-started")
    for data in _confirmations(document):
        data.set("InResponseTo", "id-a-login-we-never-started")


def _unsolicited(document: etree._Element) -> None:
    document.attrib.pop("InResponseTo", None)
    for data in _confirmations(document):
        data.attrib.pop("InResponseTo", None)


def _confirmation_expired(document: etree._Element) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for data in _confirmations(document):
        data.set("NotOnOrAfter", past)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_audience, "is not a valid audience"),
        (_destination, "The response was received at"),
        (_recipient, "A valid SubjectConfirmation was not found"),
        (_confirmation_in_response_to, "A valid SubjectConfirmation was not found"),
        (_confirmation_expired, "A valid SubjectConfirmation was not found"),
        (_response_in_response_to, "answers no login we started"),
        (_unsolicited, "unsolicited SAML responses are not accepted"),
    ],
    ids=[
        "wrong-audience",
        "wrong-destination",
        "wrong-recipient",
        "wrong-in-response-to-in-the-assertion",
        "subject-confirmation-expired",
        "wrong-in-response-to",
        "unsolicited",
    ],
)
async def test_signed_saml_assertion_wrong_in_one_respect_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    saml_idp: SamlIdp,
    dns: LocalDns,
    tamper: Tamper,
    reason: str,
) -> None:
    provider = await _saml_provider(client, owner, saml_idp, dns, SAML_DOMAIN)

    refused = await _acs(
        client, provider, saml_idp.respond(await _login_url(client, provider), tamper)
    )

    assert refused.status_code == 401, refused.text
    assert reason in refused.json()["error"]["message"]
    assert await emails(client, owner) == [owner.email]
    # Positive control: the same IdP's untouched answer to a fresh login signs in.
    accepted = await _acs(client, provider, saml_idp.respond(await _login_url(client, provider)))
    assert accepted.status_code == 302, accepted.text
    assert await emails(client, owner) == sorted([owner.email, f"dev@{SAML_DOMAIN}"])


async def test_saml_assertion_for_another_organisations_provider_is_refused(
    client: httpx.AsyncClient, owner: Account, saml_idp: SamlIdp, dns: LocalDns
) -> None:
    """One IdP (say, a shared Okta) trusted by two organisations: what it issued for
    organisation B's provider never signs anyone in at organisation A's."""
    ours = await _saml_provider(client, owner, saml_idp, dns, SAML_DOMAIN)
    other_owner = await signup(client, "Other SAML org")
    theirs = await _saml_provider(client, other_owner, saml_idp, dns, OTHER_DOMAIN)
    saml_idp.email = f"dev@{OTHER_DOMAIN}"

    # B's login, answered for B, posted at A's ACS.
    for_them = saml_idp.respond(await _login_url(client, theirs))
    posted_at_us = await _acs(client, ours, for_them)
    assert posted_at_us.status_code == 401, posted_at_us.text
    assert "answers no login we started" in posted_at_us.json()["error"]["message"]

    # An assertion addressed to B's provider (audience, destination, recipient) that claims
    # to answer a login A started.
    ours_started = await _login_url(client, ours)
    request_id = _request_id(ours_started)
    theirs_started = await _login_url(client, theirs)

    def answer_our_login(document: etree._Element) -> None:
        document.set("InResponseTo", request_id)
        for data in _confirmations(document):
            data.set("InResponseTo", request_id)

    crossed = await _acs(client, ours, saml_idp.respond(theirs_started, answer_our_login))
    assert crossed.status_code == 401, crossed.text
    assert "SAML response rejected" in crossed.json()["error"]["message"]
    assert await emails(client, owner) == [owner.email]

    # Positive control: B's own answer signs in at B.
    accepted = await _acs(client, theirs, saml_idp.respond(await _login_url(client, theirs)))
    assert accepted.status_code == 302, accepted.text
    assert f"dev@{OTHER_DOMAIN}" in await emails(client, other_owner)


def _request_id(redirect_url: str) -> str:
    """The id of the AuthnRequest in an HTTP-Redirect URL (deflated, base64)."""
    encoded = parse_qs(urlsplit(redirect_url).query)["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(encoded), -15)
    request_id: str = etree.fromstring(xml).get("ID")
    return request_id


# -- OIDC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"aud": ["another-client"]}, "Invalid claim: 'aud'"),
        ({"iss": "https://evil.example.org"}, "Invalid claim: 'iss'"),
        ({"nonce": DROP}, "Missing claim: 'nonce'"),
        ({"nonce": "a-nonce-we-never-sent"}, "Invalid claim: 'nonce'"),
        ({"aud": "__ours__+another-client", "azp": DROP}, "Missing claim: 'azp'"),
        ({"aud": "__ours__+another-client", "azp": "another-client"}, "Invalid claim: 'azp'"),
        ({"exp": 1_000_000_000}, "expired"),
    ],
    ids=[
        "wrong-aud",
        "wrong-iss",
        "missing-nonce",
        "wrong-nonce",
        "several-audiences-no-azp",
        "several-audiences-wrong-azp",
        "expired",
    ],
)
async def test_signed_id_token_wrong_in_one_respect_is_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
    patch: dict[str, Any],
    reason: str,
) -> None:
    created = await org_with_idp(client, owner, idp, dns)
    client_id = (
        await client.get(f"/api/v1/sso/providers/{created['id']}", headers=owner.headers)
    ).json()["client_id"]
    if patch.get("aud") == "__ours__+another-client":
        patch = {**patch, "aud": [client_id, "another-client"]}
    idp.claims_patch = patch

    refused = await callback(client, browser, created)

    assert refused.status_code == 401, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith("ID token rejected"), message
    assert reason in message, message
    assert await emails(client, owner) == [owner.email]
    # Positive control: the untouched ID token signs the same user in.
    idp.claims_patch = {}
    accepted = await callback(client, browser, created)
    assert accepted.status_code == 302, accepted.text
    assert await emails(client, owner) == sorted([owner.email, idp.user.email])


async def test_several_audiences_with_our_client_as_azp_sign_in(
    client: httpx.AsyncClient,
    owner: Account,
    idp: OidcProvider,
    dns: LocalDns,
    browser: httpx.AsyncClient,
) -> None:
    """The other side of the azp rule: several audiences are fine when azp names us."""
    created = await org_with_idp(client, owner, idp, dns)
    client_id = (
        await client.get(f"/api/v1/sso/providers/{created['id']}", headers=owner.headers)
    ).json()["client_id"]
    idp.claims_patch = {"aud": [client_id, "another-client"], "azp": client_id}
    accepted = await callback(client, browser, created)
    assert accepted.status_code == 302, accepted.text
    assert DOMAIN in idp.user.email
