"""Sign-up, log-in, refresh and log-out as CONTRACTS.md states them, and the known
attacks on bearer tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import PASSWORD, Account, Stack, signup


async def test_signup_returns_the_contract_token_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "Alice@Example.com", "password": PASSWORD, "organization": "Acme"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "bearer"
    assert {"access_token", "refresh_token", "user_id", "organization_id"} <= body.keys()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["label"] == "alice@example.com"
    assert me.json()["role"] == "owner"
    assert me.json()["organization_name"] == "Acme"


async def test_access_token_verifies_against_published_jwks(
    client: httpx.AsyncClient, owner: Account
) -> None:
    jwks = (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(owner.access_token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    assert "d" not in jwk, "the private half must never be published"
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(owner.access_token, key, algorithms=["EdDSA"], audience="kaizen-studio-api")
    assert claims["sub"] == owner.user_id
    assert claims["org"] == owner.organization_id
    assert claims["exp"] - claims["iat"] <= 900


async def test_duplicate_email_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient, owner: Account
) -> None:
    again = await client.post(
        "/api/v1/auth/signup",
        json={"email": owner.email.upper(), "password": PASSWORD, "organization": "Other"},
    )
    assert again.status_code == 409
    assert again.json()["error"]["details"][0]["field"] == "email"
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert login.json()["organization_id"] == owner.organization_id


async def test_weak_password_is_rejected_naming_the_field(client: httpx.AsyncClient) -> None:
    for weak in ("short", "aaaaaaaaaaaaaaaa", "Robert-is-secret-1"):
        response = await client.post(
            "/api/v1/auth/signup",
            json={"email": "robert@example.com", "password": weak, "organization": "Acme"},
        )
        assert response.status_code == 422, weak
        assert response.json()["error"]["details"][0]["field"] == "password"
    login = await client.post(
        "/api/v1/auth/login", json={"email": "robert@example.com", "password": "short"}
    )
    assert login.status_code == 401


async def test_bad_bodies_get_4xx_with_the_field(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/api/v1/auth/signup", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "invalid"

    wrong_type = await client.post(
        "/api/v1/auth/signup", json={"email": 5, "password": PASSWORD, "organization": "A"}
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["details"][0]["field"] == "email"

    unknown = await client.post(
        "/api/v1/auth/signup",
        json={"email": "c@example.com", "password": PASSWORD, "organization": "A", "role": "x"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "role"

    oversized = await client.post(
        "/api/v1/auth/signup",
        content=b'{"email": "' + b"a" * 2_000_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert oversized.status_code == 413
    assert oversized.json()["error"]["code"] == "payload_too_large"


async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, owner: Account
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": "not the password!"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_login_is_rate_limited(client: httpx.AsyncClient, owner: Account) -> None:
    statuses = []
    for _ in range(12):
        response = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": "wrong password!!"}
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert int(response.headers["retry-after"]) >= 1
    # Even the right password is refused until the window passes.
    right = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert right.status_code == 429


async def test_refresh_rotates_and_detects_reuse(client: httpx.AsyncClient, owner: Account) -> None:
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != owner.refresh_token
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 200

    # The old refresh token again: someone copied it. The whole session dies.
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert reuse.status_code == 401
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 401


async def test_logout_ends_the_session_now(client: httpx.AsyncClient, owner: Account) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=owner.headers)).status_code == 204
    assert (await client.get("/api/v1/me", headers=owner.headers)).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert refresh.status_code == 401
    # Another session of the same user is untouched.
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    other = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/api/v1/me", headers=other)).status_code == 200


def _b64(data: dict[str, object] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_forged_tokens_are_refused(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    claims = jwt.decode(owner.access_token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(owner.access_token)["kid"]
    jwks = (await client.get("/.well-known/jwks.json")).json()
    public_x = next(k for k in jwks["keys"] if k["kid"] == kid)["x"]
    now = datetime.now(UTC)
    stranger = Ed25519PrivateKey.generate()
    signing_key = stack.app.state.keys._signing_key().private_key

    def ours(**changes: object) -> str:
        return jwt.encode(
            {**claims, **changes}, signing_key, algorithm="EdDSA", headers={"kid": kid}
        )

    forged = {
        "alg none": f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(claims)}.",
        "HS256 keyed with the public key": jwt.encode(
            claims,
            base64.urlsafe_b64decode(public_x + "=="),
            algorithm="HS256",
            headers={"kid": kid},
        ),
        "someone else's key": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": kid}),
        "unknown kid": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "nope"}),
        "wrong issuer": ours(iss="https://evil.example"),
        "wrong audience": ours(aud="another-api"),
        "expired": ours(iat=now - timedelta(hours=2), exp=now - timedelta(hours=1)),
        "not yet valid": ours(nbf=now + timedelta(hours=1)),
        "no expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"},
            signing_key,
            algorithm="EdDSA",
            headers={"kid": kid},
        ),
        "refresh-typed": ours(typ="refresh"),
        "another org": ours(org="00000000-0000-0000-0000-000000000000"),
        "garbled": owner.access_token[:-6] + "AAAAAA",
        "garbage": "not.a.jwt",
    }
    for name, token in forged.items():
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "unauthenticated", name
        assert response.headers["www-authenticate"] == "Bearer"
    for header in ("", "Basic abc", "Bearer ", "Bearer\tx"):
        response = await client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_key_rotation_keeps_old_tokens_valid(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    old_kid = jwt.get_unverified_header(owner.access_token)["kid"]
    new_kid = await stack.app.state.keys.rotate()
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= published
    assert (await client.get("/api/v1/me", headers=owner.headers)).status_code == 200
    fresh = await signup(client, "Rotated")
    assert jwt.get_unverified_header(fresh.access_token)["kid"] == new_kid
    assert (await client.get("/api/v1/me", headers=fresh.headers)).status_code == 200


async def test_nul_characters_are_refused_not_stored(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/api/v1/workspaces",
        json={"name": "w", "environment": "dev", "description": "a\u0000b"},
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "description"
    query = await client.get("/api/v1/audit-events?action=a%00b", headers=owner.headers)
    assert query.status_code == 422
