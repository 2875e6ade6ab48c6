"""The current policy snapshot, swapped in one assignment when a newer bundle is verified.

A snapshot is everything built from one VerifiedBundle: the decision engine, the
authenticator (JWKS, API keys) and the grant verifier. A request reads `holder.current`
once and uses that snapshot to the end, so it never mixes two bundles. Bundle sync (or
static mode) calls `on_bundle(verified)`; a bundle whose Rego does not compile is refused
and the last good snapshot keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz_sidecar.authn import Authenticator
from authz_sidecar.grants import GrantVerifier
from policy.bundles.bundle import VerifiedBundle
from policy.engine.budgets import BudgetLedger
from policy.engine.decide import DecisionEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    bundle: VerifiedBundle
    engine: DecisionEngine
    authenticator: Authenticator
    grants: GrantVerifier
    loaded_at: float = field(default_factory=time.time)

    @property
    def organization(self) -> str:
        return self.engine.organization_id

    @property
    def agents(self) -> Mapping[str, Any]:
        agents = self.bundle.compiled.kaizen.get("agents")
        return agents if isinstance(agents, Mapping) else {}


class EngineHolder:
    def __init__(
        self,
        ledger: BudgetLedger,
        *,
        issuer: str,
        audience: str,
        gateway_binding: str | None = None,
        oauth_issuer: str | None = None,
    ) -> None:
        self.ledger = ledger
        self._oauth_issuer = oauth_issuer
        self._gateway_binding = gateway_binding  # grants.gateway_binding(credential)
        self._issuer = issuer
        self._audience = audience
        self.current: Snapshot | None = None
        self.last_error: str | None = None
        self.last_sync: float | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []

    @property
    def ready(self) -> bool:
        return self.current is not None

    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    def build(self, verified: VerifiedBundle) -> Snapshot:
        """A snapshot of `verified`; raises if its Rego does not compile."""
        kaizen = verified.compiled.kaizen
        authenticator = Authenticator(
            kaizen,
            issuer=self._issuer,
            audience=self._audience,
            mcp_resource=self.mcp_resource(kaizen),
            oauth_issuer=self._oauth_issuer,
        )
        return Snapshot(
            bundle=verified,
            engine=DecisionEngine.from_bundle(verified, ledger=self.ledger),
            authenticator=authenticator,
            grants=GrantVerifier(
                authenticator.keys,
                issuer=self._issuer,
                organization=authenticator.organization,
                gateway=self._gateway_binding,
            ),
        )

    def mcp_resource(self, kaizen: Mapping[str, Any]) -> str | None:
        """This gateway's canonical MCP URL, as the signed bundle names it under our
        credential's binding: the only audience our OAuth tokens may carry. None (no OAuth
        token accepted) for a sidecar without a gateway credential or a bundle without it."""
        resources = kaizen.get("mcp_resources")
        if self._gateway_binding is None or not isinstance(resources, Mapping):
            return None
        resource = resources.get(self._gateway_binding)
        return resource if isinstance(resource, str) else None

    def on_bundle(self, verified: VerifiedBundle) -> None:
        """The BundleStore subscriber: swap to `verified` when it is usable."""
        self.swap(verified)

    def swap(self, verified: VerifiedBundle) -> bool:
        """Serve `verified` unless it is older than the current one or unusable."""
        self.last_sync = time.time()
        current = self.current
        if current is not None and verified.revision_number < current.bundle.revision_number:
            log.warning(
                "ignoring bundle revision %s: older than the current revision %s",
                verified.revision,
                current.bundle.revision,
            )
            return False
        try:
            snapshot = self.build(verified)
        except Exception as exc:  # keep serving the last good bundle, whatever went wrong
            self.last_error = f"bundle revision {verified.revision} unusable: {exc}"
            log.error("%s; keeping revision %s", self.last_error, _revision(current))
            return False
        self.current = snapshot
        self.last_error = None
        log.info("serving bundle revision %s (key %s)", verified.revision, verified.key_id)
        for listener in self._listeners:
            listener(snapshot)
        return True


def _revision(snapshot: Snapshot | None) -> str:
    return snapshot.bundle.revision if snapshot is not None else "none"
