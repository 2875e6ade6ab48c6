"""A gateway's binding: how a sidecar and the control plane name one gateway to each other.

The control plane knows only SHA-256 of a gateway's credential (its lookup hash); the
sidecar holds the credential. Both derive the binding from that hash, so an approval grant
(`gw` claim) or the bundle's `mcp_resources` can name the gateway without carrying the
lookup hash itself.
"""

from __future__ import annotations

import hashlib


def binding_of_hash(credential_hash: str) -> str:
    """The binding of the gateway whose credential's SHA-256 (hex) is `credential_hash`."""
    return hashlib.sha256(f"kaizen-grant-gateway-v1:{credential_hash}".encode()).hexdigest()


def binding_of_credential(credential: str) -> str:
    """The binding of the gateway holding `credential` (what its sidecar computes)."""
    return binding_of_hash(hashlib.sha256(credential.encode()).hexdigest())
