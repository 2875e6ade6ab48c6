"""`x-kaizen-decision` is an HS256 JWT built with hmac directly; any JWT library (the
gateway's PyJWT) verifies it, and a change to any part breaks the signature."""

from __future__ import annotations

import jwt
import pytest

from authz_sidecar.verdict import decision_header_key, hs256_jwt

CLAIMS = {
    "decision_id": "0193a1b2c3d4e5f60718293a4b5c6d7e",
    "jti": "0193a1b2c3d4e5f60718293a4b5c6d7e",
    "method": "POST",
    "path": "/v1/agents/støtte-bot/invoke",
    "bh": None,
    "sub": "user:ana@example.com",
    "org": "org-1",
    "roles": ["developer", "approver"],
    "action": "invoke",
    "resource": "agent:støtte-bot",
    "channel": "api",
    "iat": 1_800_000_000,
    "exp": 1_800_000_030,
}


def test_pyjwt_verifies_it_and_reads_the_same_claims() -> None:
    key = decision_header_key("kgw_gateway_credential")
    token = hs256_jwt(CLAIMS, key)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    decoded = jwt.decode(
        token, key, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert decoded == CLAIMS


@pytest.mark.parametrize("part", [0, 1, 2])
def test_any_changed_part_or_key_is_refused(part: int) -> None:
    key = decision_header_key("kgw_gateway_credential")
    pieces = hs256_jwt(CLAIMS, key).split(".")
    pieces[part] = pieces[part][:-2] + ("AA" if pieces[part][-2:] != "AA" else "BB")
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(".".join(pieces), key, algorithms=["HS256"], options={"verify_exp": False})
    other = decision_header_key("kgw_another_gateway")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            hs256_jwt(CLAIMS, key), other, algorithms=["HS256"], options={"verify_exp": False}
        )
