"""A shared platform gateway's sidecar (ADR 0012): one engine per organisation it serves,
and each call decided under the organisation of the caller's verified credential.

The organisation is never the caller's choice. An API key is looked up by its SHA-256 in
one index built from every served bundle's `api_keys` (the hash is the key, and it names
one organisation). A JWT's `org` claim only says whose keys to verify it with: that
organisation's authenticator then checks signature, issuer, audience and that the signed
`org` is its own, so a token naming another organisation fails there. Only after that
are the caller's own words compared with it: an `/o/{org}/…` path prefix and an
`X-Kaizen-Organization` header must name the credential's organisation, or the call is a
deny logged under the caller's organisation.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt

from authz_sidecar.authn import API_KEY_PREFIX
from authz_sidecar.engine_holder import EngineHolder, Snapshot
from authz_sidecar.mapping import HttpFacts
from policy.bundles.bundle import VerifiedBundle
from policy.engine.budgets import BudgetLedger

log = logging.getLogger(__name__)

# `/o/{organization id}/rest-of-the-gateway-route`: the organisation namespace on the wire.
_NAMESPACED = re.compile(r"/o/([^/?#]{1,128})(/[^?#]*)?(\?.*)?", re.DOTALL)
ORGANIZATION_HEADER = "x-kaizen-organization"
NO_TENANT = (
    "credential belongs to no organisation this shared gateway serves "
    "(unknown, revoked or expired API key, or a token of another gateway's organisation)"
)


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class Pick:
    """The engine a request's credential names, and the route with its namespace removed."""

    snapshot: Snapshot | None
    route: HttpFacts


class Tenants:
    """The served organisations' engines (`EngineHolder` each) and the credential index.

    Quacks like an `EngineHolder` where the servers only read readiness: `current` is
    always None (no single organisation is "the" one here), `ready` is true once any
    organisation's bundle is served.
    """

    def __init__(self, make_holder: Callable[[], EngineHolder], ledger: BudgetLedger) -> None:
        self._make_holder = make_holder
        self.ledger = ledger
        self.holders: dict[str, EngineHolder] = {}
        self._api_keys: dict[str, str] = {}  # SHA-256 of a key -> its organisation
        self._clashes: frozenset[str] = frozenset()
        self.current: Snapshot | None = None
        self.last_error: str | None = None
        self.last_sync: float | None = None

    @property
    def ready(self) -> bool:
        return any(holder.current is not None for holder in self.holders.values())

    def snapshots(self) -> Iterator[Snapshot]:
        for holder in list(self.holders.values()):
            if holder.current is not None:
                yield holder.current

    def holder(self, organization: str) -> EngineHolder:
        """The engine holder of `organization`, made on first use."""
        holder = self.holders.get(organization)
        if holder is None:
            holder = self.holders[organization] = self._make_holder()
            holder.subscribe(lambda snapshot: self._served(organization, snapshot))
        return holder

    def on_bundle(self, organization: str) -> Callable[[VerifiedBundle], None]:
        """The bundle store subscriber of `organization`'s store."""

        def swap(verified: VerifiedBundle) -> None:
            if verified.scope != organization:  # the store is bound to it; never mix
                raise ValueError(
                    f"bundle of scope {verified.scope!r} offered for organisation "
                    f"{organization!r}: refused"
                )
            self.holder(organization).on_bundle(verified)
            holder = self.holders[organization]
            self.last_sync = time.time()
            self.last_error = holder.last_error

        return swap

    def drop(self, organization: str) -> None:
        """Stop serving `organization` (no longer placed here): its calls are refused."""
        if self.holders.pop(organization, None) is not None:
            log.info("no longer serving organisation %s", organization)
            self._reindex()

    def _served(self, organization: str, snapshot: Snapshot) -> None:
        if snapshot.organization != organization:  # the engine's own organisation decides
            log.error(
                "bundle of organisation %s served under %s; dropping it",
                snapshot.organization,
                organization,
            )
            self.holders.pop(organization, None)
        self._reindex()

    def _reindex(self) -> None:
        index: dict[str, str] = {}
        clashes: set[str] = set()
        for snapshot in self.snapshots():
            keys = snapshot.bundle.compiled.kaizen.get("api_keys")
            for digest in keys if isinstance(keys, Mapping) else {}:
                if index.setdefault(digest, snapshot.organization) != snapshot.organization:
                    clashes.add(digest)  # one secret in two organisations: it names neither
        self._api_keys, self._clashes = index, frozenset(clashes)

    def organization_of(self, authorization: str | None) -> str | None:
        """Which served organisation's engine may verify this credential; None: none."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or len(credential) > 8192:
            return None
        if credential.startswith(API_KEY_PREFIX):
            digest = hashlib.sha256(credential.encode()).hexdigest()
            return None if digest in self._clashes else self._api_keys.get(digest)
        try:
            claims: dict[str, Any] = jwt.decode(credential, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        organization = claims.get("org")  # a hint: that organisation's keys verify it
        return organization if isinstance(organization, str) else None

    def pick(self, facts: HttpFacts) -> Pick:
        """The engine for this request's credential (None: no served organisation's) and
        the route the mapping sees: the path without its `/o/{org}` namespace."""
        organization = self.organization_of(facts.headers.get("authorization"))
        holder = self.holders.get(organization) if organization is not None else None
        snapshot = holder.current if holder is not None else None
        return Pick(snapshot, strip_namespace(facts))

    def namespace_refusal(self, facts: HttpFacts, principal: Mapping[str, Any]) -> str | None:
        """Why the caller's own naming of an organisation contradicts its credential."""
        own = principal.get("organization")
        named = namespace_of(facts.path)
        if named is not None and named != own:
            return (
                f"the path names organisation {named[:64]!r} but the credential belongs to "
                f"{own!r}: a caller reaches only its own organisation's agents"
            )
        header = facts.headers.get(ORGANIZATION_HEADER)
        if header is not None and header != own:
            return (
                f"X-Kaizen-Organization names {header[:64]!r} but the credential belongs to "
                f"{own!r}: the organisation comes from the credential only"
            )
        return None

    def serving(self) -> str | None:
        """`organisation:revision` of each served organisation (None: none yet)."""
        served = [f"{s.organization}:{s.bundle.revision}" for s in self.snapshots()]
        return ",".join(sorted(served)) or None


def namespace_of(path: str) -> str | None:
    match = _NAMESPACED.fullmatch(path)
    return match[1] if match else None


def strip_namespace(facts: HttpFacts) -> HttpFacts:
    """`/o/{org}/v1/agents/x/invoke` as the gateway route `/v1/agents/x/invoke`."""
    match = _NAMESPACED.fullmatch(facts.path)
    if match is None:
        return facts
    return replace(facts, path=(match[2] or "/") + (match[3] or ""))


def shared_status(tenants: Tenants, sync: Any) -> dict[str, Any]:
    """The `/status` fields of a shared gateway's sidecar (`sync`: its PlatformSync)."""
    return {
        "ready": tenants.ready,
        "organizations": {
            s.organization: {"bundle_revision": s.bundle.revision, "key_id": s.bundle.key_id}
            for s in tenants.snapshots()
        },
        "bundle_verification_failures": sync.refused if sync is not None else 0,
        "last_verification_error": sync.last_refusal if sync is not None else None,
        "sync_error": sync.last_error if sync is not None else None,
    }
