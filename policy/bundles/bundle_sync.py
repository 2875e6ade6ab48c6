"""Bundle sync: long-poll the control plane for new bundle revisions (docs/runtime-protocols.md).

`GET /api/v1/gateways/self` names the bundle scope when none is configured (then it is
pinned: a later answer naming another scope is refused, as is one contradicting the
configured scope); `GET /api/v1/bundles/{scope}/jwks.json` — that organisation's bundle
keys and no one else's — gives the trust anchors when none are pinned (trusted on first
contact; fetched again, once, when a bundle does not verify, in case the signing key was
rotated, and then a new key is taken only if a trusted key endorses it); then
`GET /api/v1/bundles/{scope}/bundle.tar.gz` with `If-None-Match` and `Prefer: wait=N`
returns the next revision as soon as it is published. A refused bundle is logged and the
store keeps serving the bundle it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from policy.bundles.bundle import MAX_BUNDLE_BYTES
from policy.bundles.bundle_store import BundleStore, ScopeMismatch
from policy.errors import BundleVerificationError, PolicyError

__all__ = [
    "Backoff",
    "BundleSync",
    "CredentialRefused",
    "InsecureControlPlane",
    "Reconnect",
    "check_control_plane_url",
]

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60  # the control plane holds a long-poll at most this long


class CredentialRefused(Exception):
    """The control plane answered 401/403 to the gateway credential."""


class InsecureControlPlane(PolicyError):
    """A control-plane URL the runtime must not send its credential to or trust bundles from."""


def check_control_plane_url(
    url: str,
    *,
    allow_insecure: bool = False,
    setting: str = "KAIZEN_CONTROL_PLANE_URL",
    carries: str = "the gateway credential and the bundles",
) -> None:
    """Refuse a plain-`http://` control plane unless it is on this host (loopback) or
    `allow_insecure` (KAIZEN_ALLOW_INSECURE_CONTROL_PLANE=true) says so: over plain HTTP
    anyone on the path reads the credential and answers in the control plane's name.
    `setting` and `carries` name, in the refusal, where the URL came from and what would
    cross the network."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme != "http" or not parts.hostname:
        raise InsecureControlPlane(f"{setting} {url!r} is not an http(s) URL with a host")
    if _loopback(parts.hostname) or allow_insecure:
        return
    raise InsecureControlPlane(
        f"{setting} {url!r} is plain http to another host: {carries} would cross the network "
        "unprotected. Use https://, or set KAIZEN_ALLOW_INSECURE_CONTROL_PLANE=true for a "
        "network you trust (tests, dev)"
    )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Reconnect:
    """One process's signal that the control plane answered again.

    The bundle sync, the status reporter and the decision-log shipper back off on their
    own; whichever reaches the control plane first after an outage calls `reached()`, and
    every other one sleeping in `Backoff.sleep()` retries at once instead of finishing a
    back-off of up to `Backoff.maximum` seconds.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def reached(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), delay)


class Backoff:
    """Exponential back-off with full jitter, capped; `reset()` after a success.

    With a shared `Reconnect`, a sleep ends early when another client of the same control
    plane gets through, and `reset()` tells the others.
    """

    def __init__(
        self, initial: float = 0.25, maximum: float = 5.0, reconnect: Reconnect | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.reconnect = reconnect
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  (jitter, not crypto)

    async def sleep(self, delay: float | None = None) -> float:
        """Sleep `delay` (default: the next back-off step), or less after a reconnect."""
        pause = self.next_delay() if delay is None else delay
        if self.reconnect is None:
            await asyncio.sleep(pause)
        else:
            await self.reconnect.pause(pause)
        return pause

    def reset(self) -> None:
        if self.attempt and self.reconnect is not None:
            self.reconnect.reached()
        self.attempt = 0


def credential_refused_message(status: int, what: str) -> str:
    return (
        f"gateway credential refused by the control plane (HTTP {status}) while {what}: "
        "check KAIZEN_GATEWAY_TOKEN is this gateway's current credential "
        "(POST /api/v1/gateways shows it once) and that the gateway was not deleted"
    )


class BundleSync:
    """Keeps `store` on the newest bundle its scope has; `run()` until cancelled."""

    def __init__(
        self,
        store: BundleStore,
        control_plane_url: str,
        token: str,
        *,
        wait_seconds: int = 30,
        client: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS}")
        self.store = store
        self.control_plane_url = control_plane_url.rstrip("/")
        self._token = token
        self.wait_seconds = wait_seconds
        self._client = client
        self.backoff = backoff or Backoff()
        self.last_sync: datetime | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.refused = 0
        self.last_refusal: str | None = None
        self.gateway: Mapping[str, Any] | None = None
        self.not_found_delay = 5.0
        self._refused_etag: str | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"BundleSync({self.control_plane_url!r}, scope={self.store.scope!r})"

    async def run(self) -> None:
        """Poll forever; returns only by cancellation (the client it made is closed)."""
        client = self._client or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=self.wait_seconds + 15.0)
        )
        try:
            while True:
                try:
                    delay = await self.sync_once(client)
                except CredentialRefused as exc:
                    self._failed(str(exc), logging.ERROR)
                    delay = None
                except ScopeMismatch as exc:
                    self.refused += 1
                    self.last_refusal = str(exc)[:1000]
                    self._failed(
                        f"{exc}; still serving revision {self.store.revision}", logging.ERROR
                    )
                    delay = None
                except httpx.HTTPStatusError as exc:
                    self._failed(
                        f"control plane answered HTTP {exc.response.status_code} "
                        f"for {exc.request.url.path}"
                    )
                    delay = None
                except (httpx.HTTPError, ValueError) as exc:
                    self._failed(f"control plane unreachable at {self.control_plane_url}: {exc!r}")
                    delay = None
                except Exception as exc:  # keep syncing: the sidecar must not go stale silently
                    logger.exception("bundle sync failed unexpectedly")
                    self._failed(f"unexpected error: {exc!r}", logging.ERROR)
                    delay = None
                if delay is None:  # a failure: back off, or retry when another client gets in
                    await self.backoff.sleep()
                elif delay:
                    await asyncio.sleep(delay)
        finally:
            if self._client is None:
                await client.aclose()

    async def sync_once(self, client: httpx.AsyncClient) -> float:
        """One round: discover, fetch keys, one long-poll. Returns how long to pause next."""
        if self.store.scope is None or self.gateway is None:
            await self._discover(client)
        if self.store.jwks is None:
            await self.fetch_jwks(client)
        return await self._poll(client)

    async def _discover(self, client: httpx.AsyncClient) -> None:
        """Ask which gateway this is; set the store's scope if it has none."""
        response = await client.get(
            f"{self.control_plane_url}/api/v1/gateways/self", headers=self._auth()
        )
        self._raise_for_credential(response, "asking which gateway it is")
        response.raise_for_status()
        gateway = response.json()
        scope = gateway.get("bundle_scope") if isinstance(gateway, dict) else None
        if not isinstance(scope, str) or not scope:
            raise ValueError("GET /api/v1/gateways/self did not name a bundle_scope")
        self._contact()
        # The answer may name the scope only the first time (then it is pinned); any later
        # answer, or one contradicting configuration, naming another scope is refused.
        self.store.pin_scope(scope, "the control plane's GET /api/v1/gateways/self")
        self.gateway = gateway
        logger.info(
            "gateway %s (%s): bundle scope %s", gateway.get("name"), gateway.get("id"), scope
        )

    async def fetch_jwks(self, client: httpx.AsyncClient) -> Mapping[str, Any]:
        """This scope's bundle keys only: another organisation's key never verifies here."""
        scope = self.store.scope
        if scope is None:
            raise ValueError("cannot fetch bundle keys before the bundle scope is known")
        path = f"/api/v1/bundles/{quote(scope, safe='')}/jwks.json"
        response = await client.get(f"{self.control_plane_url}{path}", headers=self._auth())
        self._raise_for_credential(response, "fetching its organisation's bundle keys")
        response.raise_for_status()
        jwks = response.json()
        if not isinstance(jwks, dict):
            raise ValueError(f"{path} is not a JSON object")
        try:
            return self.store.trust(jwks)
        except BundleVerificationError as exc:
            raise ValueError(f"{path}: {exc}") from None

    async def _poll(self, client: httpx.AsyncClient) -> float:
        scope = self.store.scope
        assert scope is not None
        headers = {**self._auth(), "Prefer": f"wait={self.wait_seconds}"}
        known = self._refused_etag or _etag(self.store.revision)
        if known is not None:
            headers["If-None-Match"] = known
        url = f"{self.control_plane_url}/api/v1/bundles/{quote(scope, safe='')}/bundle.tar.gz"
        async with client.stream("GET", url, headers=headers) as response:
            self._raise_for_credential(response, "fetching its bundle")
            if response.status_code == 304:
                self._contact()
                return 0.0
            if response.status_code == 404:
                return await self._not_found(client, scope)
            response.raise_for_status()
            if response.status_code != 200:
                raise ValueError(f"unexpected HTTP {response.status_code} for the bundle")
            data = await _read_capped(response, MAX_BUNDLE_BYTES)
            etag = response.headers.get("ETag")
        self._contact()
        return await self._install(client, data, etag)

    async def _not_found(self, client: httpx.AsyncClient, scope: str) -> float:
        self._contact()
        if self.gateway is None:
            await self._discover(client)
        # A configured scope that is not this gateway's also answers 404: say so.
        if self.gateway is not None and self.gateway.get("bundle_scope") != scope:
            self._failed(
                f"configured bundle scope {scope!r} is not this gateway's "
                f"({self.gateway.get('bundle_scope')!r}); fix the sidecar's scope setting",
                logging.ERROR,
            )
            return self.backoff.maximum
        logger.info(
            "no bundle published yet for scope %s; asking again in %.0f s",
            scope,
            self.not_found_delay,
        )
        return self.not_found_delay

    async def _install(self, client: httpx.AsyncClient, data: bytes, etag: str | None) -> float:
        try:
            verified = await asyncio.to_thread(self.store.verify, data)
        except BundleVerificationError as first:
            if self.store.pinned:
                return self._refuse(first, etag)
            before = self.store.jwks
            # A key rotation shows up as an unknown kid: refresh the keys once, then decide.
            jwks = await self.fetch_jwks(client)
            if jwks == before:
                return self._refuse(self._unendorsed(first), etag)
            try:
                verified = await asyncio.to_thread(self.store.verify, data, jwks)
            except BundleVerificationError as second:
                return self._refuse(self._unendorsed(second), etag)
        trusted = self.store.jwks
        # Enforce first, then make it last-known-good: the fsync is off the critical path,
        # and a crash between the two only means a restart serves the previous revision.
        self.store.activate(verified, trusted)  # subscribers run on the event loop thread
        try:
            await asyncio.to_thread(self.store.persist, verified, trusted)
        except OSError as exc:
            self._failed(
                f"could not persist bundle revision {verified.revision} to "
                f"{self.store.directory} ({exc}); a restart would serve an older one",
                logging.ERROR,
            )
        self._refused_etag = None
        logger.info(
            "installed bundle revision %s of scope %s (key %s)",
            verified.revision,
            verified.scope,
            verified.key_id,
        )
        return 0.0

    def _unendorsed(self, error: BundleVerificationError) -> BundleVerificationError:
        if not self.store.unendorsed:
            return error
        return BundleVerificationError(
            f"{error}; the control plane offered key(s) {', '.join(self.store.unendorsed)} "
            "that no key this runtime trusts endorses"
        )

    def _refuse(self, error: BundleVerificationError, etag: str | None) -> float:
        self.refused += 1
        self.last_refusal = str(error)[:1000]
        self._refused_etag = etag
        self._failed(
            f"refused bundle {etag or '(no ETag)'}: {error}; still serving revision "
            f"{self.store.revision}",
            logging.ERROR,
        )
        # With the refused ETag named, the next poll waits for a different revision.
        return self.backoff.maximum if etag is None else 0.0

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _raise_for_credential(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise CredentialRefused(credential_refused_message(response.status_code, what))

    def _contact(self) -> None:
        self.last_sync = datetime.now(UTC)
        self.last_error = None
        self.backoff.reset()

    def _failed(self, message: str, level: int = logging.WARNING) -> None:
        self.failures += 1
        self.last_error = message
        logger.log(level, "bundle sync: %s", message)


def _etag(revision: int | None) -> str | None:
    return None if revision is None else f'"{revision}"'


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"bundle download is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
