"""Access JWTs and API keys against the bundle: every known JWT attack is refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from authz_sidecar.authn import AuthenticationError, Authenticator, scope_refusal
from policy.bundles.bundle import VerifiedBundle
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    AUDIENCE,
    ISSUER,
    ORG,
    Keys,
    access_token,
    make_keys,
    sha256,
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


def _kaizen_with(keys: Keys, **extra: object) -> dict[str, object]:
    return {"organization": ORG, "jwks": keys.jwks, **extra}


def test_api_key_expiry_and_scopes_come_from_the_bundle(keys: Keys) -> None:
    digest = sha256(API_KEY)
    now = time.time()
    live = Authenticator(
        _kaizen_with(
            keys,
            api_keys={
                digest: {
                    "name": "ci",
                    "roles": [],
                    "scopes": ["agents:invoke"],
                    "expires_at": now + 60,
                }
            },
        ),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    principal = live.authenticate(f"Bearer {API_KEY}")
    assert principal["attributes"] == {"scopes": ["agents:invoke"]}
    assert scope_refusal(principal, "invoke", "agent") is None
    refusal = scope_refusal(principal, "run", "pipeline")
    assert refusal is not None
    assert "do not include pipelines:run" in refusal
    expired = Authenticator(
        _kaizen_with(keys, api_keys={digest: {"name": "ci", "roles": [], "expires_at": now - 1}}),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    with pytest.raises(AuthenticationError, match="API key ci has expired"):
        expired.authenticate(f"Bearer {API_KEY}")


@pytest.mark.parametrize(
    ("scopes", "action", "resource_type", "allowed"),
    [
        ([], "invoke", "agent", True),
        (["*:*"], "run", "pipeline", True),
        (["agents:*"], "invoke", "agent", True),
        (["agents:read"], "invoke", "agent", False),
        (["mcp:connect"], "list", "mcp", False),
        (["mcp:*", "agents:invoke"], "list", "mcp", True),
    ],
)
def test_scope_semantics_match_the_control_plane(
    scopes: list[str], action: str, resource_type: str, allowed: bool
) -> None:
    principal = {"attributes": {"scopes": scopes}}
    assert (scope_refusal(principal, action, resource_type) is None) is allowed


def test_token_of_a_revoked_session_is_refused(keys: Keys) -> None:
    authn = Authenticator(
        _kaizen_with(keys, revoked_sessions=["sid-gone"]), issuer=ISSUER, audience=AUDIENCE
    )
    assert authn.authenticate(f"Bearer {access_token(keys, sid='sid-live')}")["id"]
    with pytest.raises(AuthenticationError, match="session has been revoked"):
        authn.authenticate(f"Bearer {access_token(keys, sid='sid-gone')}")
