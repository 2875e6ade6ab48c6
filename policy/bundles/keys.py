"""Signing keys and JWKS: which JWS algorithm belongs to which key, decided by the key.

The algorithm is derived from the key type (and curve), never taken from a token header,
so `alg: none`, HS256-with-a-public-key and other algorithm confusion cannot verify.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from policy.errors import PolicyError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})


class SigningKeyError(PolicyError):
    """A key that cannot sign or verify bundles."""


def load_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not a PEM private key: {exc}") from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise SigningKeyError(f"unsupported key type {type(key).__name__}; use Ed25519, EC or RSA")
    return key


def signing_algorithm(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            key.curve.name
        )
        if curve is None:
            raise SigningKeyError(f"unsupported EC curve {key.curve.name}")
        return _EC_ALGORITHMS[curve]
    if key.key_size < 2048:
        raise SigningKeyError("RSA keys must have at least 2048 bits")
    return "RS256"


def public_jwk(key: PrivateKey | PublicKey, kid: str) -> dict[str, Any]:
    public = key.public_key() if not isinstance(key, PublicKey) else key
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": signing_algorithm(public), "use": "sig"}


def jwk_algorithm(jwk: Mapping[str, Any]) -> str:
    """The one algorithm a JWK may verify; raises SigningKeyError for symmetric or odd keys."""
    kty, stated = jwk.get("kty"), jwk.get("alg")
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        expected = "EdDSA"
    elif kty == "EC" and jwk.get("crv") in _EC_ALGORITHMS:
        expected = _EC_ALGORITHMS[str(jwk["crv"])]
    elif kty == "RSA":
        expected = str(stated) if stated in _RSA_ALGORITHMS else "RS256"
    else:
        raise SigningKeyError(f"key type {kty!r} cannot verify bundle signatures")
    if stated is not None and stated != expected:
        raise SigningKeyError(f"key says alg {stated!r} but its type only allows {expected}")
    if jwk.get("use") not in (None, "sig"):
        raise SigningKeyError(f"key use {jwk.get('use')!r} is not 'sig'")
    return expected


def generate_ed25519(kid: str) -> tuple[bytes, dict[str, Any]]:
    """A new private key (PKCS#8 PEM) and the JWKS that verifies it."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, {"keys": [public_jwk(key, kid)]}


def jwks_json(jwks: Mapping[str, Any]) -> str:
    return json.dumps(jwks, indent=2, sort_keys=True) + "\n"


# -- key endorsements: how a runtime that trusts a scope's old key comes to trust its new one

ENDORSEMENT_TYP = "kaizen-key-endorsement"
MAX_ENDORSEMENTS = 1000
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e")


def endorse(
    signer: PrivateKey, signer_kid: str, jwk: Mapping[str, Any], *, scope: str, iat: int
) -> str:
    """A JWS by `signer` saying: `jwk` is a bundle key of `scope`."""
    payload = {"scope": scope, "kid": jwk["kid"], "jwk": dict(jwk), "iat": iat}
    return jwt.encode(
        payload,
        signer,
        algorithm=signing_algorithm(signer),
        headers={"kid": signer_kid, "typ": ENDORSEMENT_TYP},
    )


def endorsed_jwks(
    trusted: Mapping[str, Any], offered: Mapping[str, Any], *, scope: str
) -> tuple[dict[str, Any], list[str]]:
    """The keys of `offered` this runtime may trust, and the kids it may not.

    A key is trusted if `trusted` holds the same key (same kid and public material), or a
    chain of `offered["endorsements"]` leads to it from a trusted key, each link a JWS by
    the previous key binding the next one to `scope`. So after the first contact nobody
    who can answer in the control plane's name can add a key of their own.
    """
    known: dict[str, Mapping[str, Any]] = {
        str(jwk["kid"]): jwk for jwk in _keys(trusted) if isinstance(jwk.get("kid"), str)
    }
    endorsements = offered.get("endorsements") or []
    tokens = [t for t in endorsements if isinstance(t, str)][:MAX_ENDORSEMENTS]
    grew = True
    while grew:  # at most len(tokens) rounds: each round adds a key or stops
        grew = False
        for token in tokens:
            endorsed = _endorsed_key(token, known, scope)
            if endorsed is not None and str(endorsed["kid"]) not in known:
                known[str(endorsed["kid"])] = endorsed
                grew = True
    accepted, refused = [], []
    for jwk in _keys(offered):
        kid = jwk.get("kid")
        match = known.get(kid) if isinstance(kid, str) else None
        if match is not None and _public(match) == _public(jwk):
            accepted.append(dict(jwk))
        else:
            refused.append(str(kid))
    return {"keys": accepted}, refused


def _endorsed_key(
    token: str, known: Mapping[str, Mapping[str, Any]], scope: str
) -> Mapping[str, Any] | None:
    try:
        header = jwt.get_unverified_header(token)
        signer = known.get(str(header.get("kid")))
        if signer is None or header.get("typ") != ENDORSEMENT_TYP:
            return None
        algorithm = jwk_algorithm(signer)
        if header.get("alg") != algorithm:
            return None
        key = jwt.PyJWK(dict(signer), algorithm=algorithm).key
        payload = jwt.decode(token, key, algorithms=[algorithm], options={"verify_aud": False})
        endorsed = payload.get("jwk")
        if (
            payload.get("scope") != scope
            or not isinstance(endorsed, dict)
            or endorsed.get("kid") != payload.get("kid")
            or not isinstance(endorsed.get("kid"), str)
        ):
            return None
        jwk_algorithm(endorsed)  # a key that could not verify bundles is no use
    except (jwt.PyJWTError, SigningKeyError, ValueError, TypeError, AttributeError):
        return None
    return endorsed


def _keys(jwks: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    return [k for k in keys if isinstance(k, Mapping)] if isinstance(keys, list) else []


def _public(jwk: Mapping[str, Any]) -> dict[str, Any]:
    return {name: jwk.get(name) for name in _PUBLIC_MEMBERS}
