"""`policy.bundles.keys.endorsed_jwks`: which offered keys a runtime that already trusts some keys
of a scope may add (a rotation), and which it must not (anything slipped in)."""

from __future__ import annotations

from typing import Any

import jwt

from policy.bundles.keys import (
    ENDORSEMENT_TYP,
    endorse,
    endorsed_jwks,
    generate_ed25519,
    load_private_key,
)

SCOPE = "org-a"


def _key(kid: str) -> tuple[Any, dict[str, Any]]:
    pem, jwks = generate_ed25519(kid)
    return load_private_key(pem), jwks["keys"][0]


def test_a_rotation_endorsed_by_the_trusted_key_is_followed_through_a_chain() -> None:
    one, one_jwk = _key("k1")
    two, two_jwk = _key("k2")
    _, three_jwk = _key("k3")
    offered = {
        # k1 expired from the JWKS; the runtime was away for two rotations.
        "keys": [two_jwk, three_jwk],
        "endorsements": [
            endorse(two, "k2", three_jwk, scope=SCOPE, iat=2),
            endorse(one, "k1", two_jwk, scope=SCOPE, iat=1),
        ],
    }
    trusted, refused = endorsed_jwks({"keys": [one_jwk]}, offered, scope=SCOPE)
    assert [k["kid"] for k in trusted["keys"]] == ["k2", "k3"]
    assert refused == []


def test_an_unendorsed_key_is_refused_and_trusted_ones_stay() -> None:
    _, one_jwk = _key("k1")
    _, slipped = _key("mallory")
    trusted, refused = endorsed_jwks({"keys": [one_jwk]}, {"keys": [one_jwk, slipped]}, scope=SCOPE)
    assert [k["kid"] for k in trusted["keys"]] == ["k1"]
    assert refused == ["mallory"]


def test_a_known_kid_with_other_key_material_is_refused() -> None:
    _, one_jwk = _key("k1")
    _, impostor = _key("k1")  # same kid, the attacker's key
    trusted, refused = endorsed_jwks({"keys": [one_jwk]}, {"keys": [impostor]}, scope=SCOPE)
    assert trusted == {"keys": []}
    assert refused == ["k1"]


def test_endorsements_for_another_scope_or_by_an_untrusted_key_do_not_count() -> None:
    one, one_jwk = _key("k1")
    mallory, _ = _key("mallory")
    _, two_jwk = _key("k2")
    for endorsement in (
        endorse(one, "k1", two_jwk, scope="org-b", iat=1),  # another organisation's
        endorse(mallory, "mallory", two_jwk, scope=SCOPE, iat=1),  # signer not trusted
        endorse(mallory, "k1", two_jwk, scope=SCOPE, iat=1),  # claims k1, signed by another
    ):
        offered = {"keys": [two_jwk], "endorsements": [endorsement, "not a jws", 7]}
        trusted, refused = endorsed_jwks({"keys": [one_jwk]}, offered, scope=SCOPE)
        assert trusted == {"keys": []}
        assert refused == ["k2"]


def test_an_endorsement_whose_kid_and_key_disagree_does_not_count() -> None:
    one, one_jwk = _key("k1")
    _, three_jwk = _key("k3")
    mixed = jwt.encode(
        {"scope": SCOPE, "kid": "k2", "jwk": three_jwk, "iat": 1},
        one,
        algorithm="EdDSA",
        headers={"kid": "k1", "typ": ENDORSEMENT_TYP},
    )
    offered = {"keys": [three_jwk], "endorsements": [mixed]}
    trusted, refused = endorsed_jwks({"keys": [one_jwk]}, offered, scope=SCOPE)
    assert trusted == {"keys": []}
    assert refused == ["k3"]
