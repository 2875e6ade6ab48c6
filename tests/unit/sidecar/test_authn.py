"""Access JWTs and API keys against the bundle: every known JWT attack is refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from authz_sidecar.authn import AuthenticationError, Authenticator
from policy.bundle import VerifiedBundle
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    AUDIENCE,
    ISSUER,
    ORG,
    Keys,
    access_token,
    make_keys,
)


@pytest.fixture
def authn(verified: VerifiedBundle) -> Authenticator:
    return Authenticator(verified.compiled.kaizen, issuer=ISSUER, audience=AUDIENCE)


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_valid_access_token_is_a_user_principal(authn: Authenticator, keys: Keys) -> None:
    principal = authn.authenticate(f"Bearer {access_token(keys, role='developer', teams=['sre'])}")
    assert principal["id"] == f"user:{ALICE}"
    assert (principal["type"], principal["organization"]) == ("user", ORG)
    assert (principal["roles"], principal["teams"]) == (["developer"], ["sre"])


def test_api_key_is_found_by_its_hash(authn: Authenticator) -> None:
    principal = authn.authenticate(f"Bearer {API_KEY}")
    assert (principal["id"], principal["type"]) == ("apikey:ci-bot", "apikey")
    with pytest.raises(AuthenticationError, match="unknown, revoked or expired"):
        authn.authenticate("Bearer ks_not_a_key_we_know")


def test_alg_none_is_refused(authn: Authenticator) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "typ": "access", "org": ORG, "email": ALICE}
    token = f"{_b64({'alg': 'none', 'kid': 'cp-key-1'})}.{_b64({**claims, 'exp': now + 60})}."
    with pytest.raises(AuthenticationError, match="not EdDSA"):
        authn.authenticate(f"Bearer {token}")


def test_hs256_signed_with_the_public_key_is_refused(authn: Authenticator, keys: Keys) -> None:
    public = keys.jwks["keys"][0]["x"].encode()  # what an attacker can read from the JWKS
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "typ": "access", "org": ORG, "email": ALICE,
              "role": "owner", "sub": "x", "iat": now, "exp": now + 60}  # fmt: skip
    token = jwt.encode(claims, public, algorithm="HS256", headers={"kid": keys.kid})
    with pytest.raises(AuthenticationError, match="not EdDSA"):
        authn.authenticate(f"Bearer {token}")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": "another-api"}, "audience"),
        ({"typ": "refresh"}, "not an access token"),
        ({"org": "org-other"}, "another organization"),
        ({"exp": None}, "no exp claim"),
        ({"email": None}, "no email"),
        ({"teams": "sre"}, "teams"),
    ],
)
def test_bad_claims_are_refused(
    authn: Authenticator, keys: Keys, claims: dict[str, object], reason: str
) -> None:
    with pytest.raises(AuthenticationError, match=reason):
        authn.authenticate(f"Bearer {access_token(keys, **claims)}")


def test_unknown_kid_and_foreign_key_are_refused(authn: Authenticator, keys: Keys) -> None:
    stranger = make_keys("cp-key-1")  # same kid, different key: the signature fails
    with pytest.raises(AuthenticationError, match="signature"):
        authn.authenticate(f"Bearer {access_token(stranger)}")
    with pytest.raises(AuthenticationError, match="does not know"):
        authn.authenticate(f"Bearer {access_token(make_keys('cp-key-9'))}")


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer " + "a" * 10_000]
)
def test_missing_or_malformed_credentials(authn: Authenticator, header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        authn.authenticate(header)


def test_tampered_payload_is_refused(authn: Authenticator, keys: Keys) -> None:
    head, _, signature = access_token(keys).split(".")
    forged = _b64({"iss": ISSUER, "aud": AUDIENCE, "typ": "access", "org": ORG,
                   "email": "root@example.com", "role": "owner", "sub": "x",
                   "iat": int(time.time()), "exp": int(time.time()) + 60})  # fmt: skip
    with pytest.raises(AuthenticationError, match="signature"):
        authn.authenticate(f"Bearer {head}.{forged}.{signature}")
