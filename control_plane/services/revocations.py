"""Ended sessions reach the sidecars within about a second: in the bundle, not at token expiry.

Sidecars authorize from the access token alone, which lives `access_token_ttl_seconds`
(15 min). So every ended session — logout, revoke, revoke-all, password change, a
demotion or removal (members.py ends the member's sessions), MFA enforcement, refresh-token
theft — is told to `RevocationPublisher.note` (via `Authenticator.on_revoke`). A background
task then records the sid (`revoked_sessions`, until every token of it has expired),
re-signs each affected organisation's published bundle (which carries the live sids as
`kaizen.revoked_sessions`), and wakes the sidecars' long-polls. It works off the request
path and in its own transaction, so a revoke inside a larger transaction never waits on
it; a burst of revocations becomes one re-sign per organisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from control_plane.db.base import utcnow
from control_plane.db.session import SYSTEM, Database
from control_plane.services import policies, sessions
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing

log = logging.getLogger(__name__)

# Past a token's `exp`, sidecars still accept it for their leeway (authz_sidecar/authn.py).
SIDECAR_LEEWAY_SECONDS = 30
_ACTOR = Actor("system", None, "kaizen-studio", None, None)
Notify = Callable[[str, int], Awaitable[None]]


class RevocationPublisher:
    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        *,
        issuer: str,
        access_token_ttl: int,
        notify: Notify,
        retry_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._keys = keys
        self._issuer = issuer
        self._lifetime = timedelta(seconds=access_token_ttl + SIDECAR_LEEWAY_SECONDS + 5)
        self._notify = notify
        self._retry = retry_seconds
        self._queue: asyncio.Queue[tuple[str, uuid.UUID | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def note(self, sid: str, organization_id: uuid.UUID | None) -> None:
        """An ended session (organisation unknown: looked up by sid)."""
        self._queue.put_nowait((sid, organization_id))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._queue.empty():  # shutting down: publish what is left, once
            with contextlib.suppress(Exception):
                await self.publish(self._drain([]))

    async def _run(self) -> None:
        while True:
            batch = self._drain([await self._queue.get()])
            while True:
                try:
                    await self.publish(batch)
                    break
                except asyncio.CancelledError:
                    for item in batch:
                        self._queue.put_nowait(item)
                    raise
                except Exception:  # the database is down: keep the sids and try again
                    log.exception("publishing %d session revocations failed", len(batch))
                    await asyncio.sleep(self._retry)
                    batch = self._drain(batch)

    def _drain(
        self, batch: list[tuple[str, uuid.UUID | None]]
    ) -> list[tuple[str, uuid.UUID | None]]:
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def publish(self, batch: list[tuple[str, uuid.UUID | None]]) -> list[tuple[str, int]]:
        """Record the sids and re-sign the bundles that must now carry them."""
        until = utcnow() + self._lifetime
        async with self._db.session(SYSTEM) as session:
            known: list[tuple[str, uuid.UUID]] = []
            for sid, organization_id in batch:
                organization_id = organization_id or await sessions.organization_of(session, sid)
                if organization_id is None:
                    log.warning("revoked session %s belongs to no known organisation", sid[:12])
                    continue
                known.append((sid, organization_id))
            await sessions.record_revoked(session, known, until)
        published = []
        # Every organisation of the batch, not only those with a new row: a retry after a
        # failed re-sign finds its rows already recorded and must still push them.
        for organization_id in sorted({o for _, o in known}):
            async with self._db.session(organization_id) as session:
                row = await policies.refresh(
                    session,
                    organization_id,
                    _ACTOR,
                    self._keys,
                    why=f"{sum(o == organization_id for _, o in known)} session(s) revoked",
                    issuer=self._issuer,
                )
            if row is not None:
                await self._notify(str(organization_id), row.revision)
                published.append((str(organization_id), row.revision))
        return published
