"""Wake bundle long-polls when any replica publishes.

On one node the wake-up is an in-process future; with `KAIZEN_REDIS_URL` every publish is
also sent on a Redis channel that every replica listens to, so a sidecar long-polling
replica B learns of a publish on replica A at once. A waiter registers *before* it reads
the current revision, so a publish between the read and the wait is never missed.

A publish wakes every sidecar of the organisation at once, and they all ask for the same
bytes: `BundleBytes` keeps recent signed bundles by (organisation, revision) — a revision
never changes once stored — and lets one database read serve all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator

import redis.asyncio as aioredis
from sqlalchemy import select

from control_plane.db.models import BundleRevision
from control_plane.db.session import Database
from control_plane.errors import NotFound

log = logging.getLogger(__name__)


class BundleEvents:
    def __init__(self, redis_url: str | None, *, prefix: str = "kaizen:") -> None:
        self._waiters: dict[str, set[asyncio.Future[int]]] = {}
        self._redis = aioredis.from_url(redis_url) if redis_url else None
        self._channel = f"{prefix}bundles"
        self._listener: asyncio.Task[None] | None = None
        self.bundles = BundleBytes()

    async def start(self) -> None:
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen(), name="bundle-events")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()

    @contextlib.contextmanager
    def waiter(self, scope: str) -> Iterator[asyncio.Future[int]]:
        """A future resolved with the revision of the next publish for `scope`."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(scope, set()).add(future)
        try:
            yield future
        finally:
            waiters = self._waiters.get(scope)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[scope]

    async def notify(self, scope: str, revision: int) -> None:
        self._wake(scope, revision)
        if self._redis is not None:
            try:
                await self._redis.publish(
                    self._channel, json.dumps({"scope": scope, "revision": revision})
                )
            except aioredis.RedisError as exc:
                # Other replicas' long-polls still time out and re-read within `wait`.
                log.warning("could not announce bundle revision on Redis: %s", exc)

    def _wake(self, scope: str, revision: int) -> None:
        for future in list(self._waiters.get(scope, ())):
            if not future.done():
                future.set_result(revision)

    async def _listen(self) -> None:
        assert self._redis is not None
        delay = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                delay = 0.5
                async for message in pubsub.listen():
                    try:
                        event = json.loads(message["data"])
                        self._wake(str(event["scope"]), int(event["revision"]))
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring a malformed bundle event on %s", self._channel)
            except aioredis.RedisError as exc:
                log.warning("bundle event listener lost Redis (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


async def newest_revision(db: Database, organization_id: uuid.UUID) -> int | None:
    """The organisation's newest bundle revision number, None before its first publish."""
    async with db.session(organization_id) as session:
        revision: int | None = await session.scalar(
            select(BundleRevision.revision).order_by(BundleRevision.revision.desc()).limit(1)
        )
        return revision


async def signed_bundle(db: Database, organization_id: uuid.UUID, revision: int) -> bytes:
    """The signed bundle of one revision (what `BundleBytes` caches)."""
    async with db.session(organization_id) as session:
        data: bytes | None = await session.scalar(
            select(BundleRevision.bundle).where(BundleRevision.revision == revision)
        )
    if data is None:
        raise NotFound("no such bundle revision")
    return data


class BundleBytes:
    """The newest `capacity` signed bundles by (organisation, revision), one load each."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[uuid.UUID, int], asyncio.Future[bytes]] = OrderedDict()

    async def get(
        self, organization_id: uuid.UUID, revision: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        key = (organization_id, revision)
        entry = self._entries.get(key)
        if entry is None:
            entry = asyncio.ensure_future(load())
            self._entries[key] = entry
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        try:
            return await asyncio.shield(entry)
        except Exception:
            if self._entries.get(key) is entry:  # a failed load is not remembered
                del self._entries[key]
            raise
