"""Replicas wake each other's bundle long-polls through Redis pub/sub."""

from __future__ import annotations

import asyncio
import uuid

from control_plane.services.bundle_events import BundleEvents


async def test_a_publish_on_one_replica_wakes_a_long_poll_on_another(redis_url: str) -> None:
    prefix = f"kaizen-test-{uuid.uuid4().hex[:8]}:"
    replica_a = BundleEvents(redis_url, prefix=prefix)
    replica_b = BundleEvents(redis_url, prefix=prefix)
    await replica_a.start()
    await replica_b.start()
    try:
        await asyncio.sleep(0.2)  # both subscribed
        with replica_a.waiter("org-1") as published, replica_a.waiter("org-2") as other:
            await replica_b.notify("org-1", 7)
            assert await asyncio.wait_for(published, 5) == 7
            assert not other.done()
    finally:
        await replica_a.close()
        await replica_b.close()


async def test_in_process_wake_without_redis() -> None:
    events = BundleEvents(None)
    await events.start()
    with events.waiter("org-1") as published:
        await events.notify("org-1", 3)
        assert published.result() == 3
    await events.close()
