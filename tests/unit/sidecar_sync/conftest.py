"""Fixtures for the sidecar's control-plane-facing parts: keys and signed bundles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy.bundles.bundle import build_bundle
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.policy_set import PolicySet

ORG = "org-7f3a"
KID = "cp-key-1"

BundleFactory = Callable[..., bytes]


@pytest.fixture(scope="session")
def compiled() -> CompiledPolicy:
    return compile_policy(PolicySet.from_documents([]), CompileContext(ORG))


@pytest.fixture(scope="session")
def signing() -> tuple[Any, dict[str, Any]]:
    pem, jwks = generate_ed25519(KID)
    return load_private_key(pem), jwks


@pytest.fixture(scope="session")
def jwks(signing: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    return signing[1]


@pytest.fixture(scope="session")
def make_bundle(compiled: CompiledPolicy, signing: tuple[Any, dict[str, Any]]) -> BundleFactory:
    def make(revision: int, *, scope: str = ORG, key: Any = None, kid: str = KID) -> bytes:
        return build_bundle(
            compiled, revision=revision, signing_key=key or signing[0], kid=kid, scope=scope
        )

    return make
