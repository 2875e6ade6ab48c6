"""Back-off between control-plane calls, and the shared wake-up after an outage."""

from __future__ import annotations

import asyncio

from policy.bundles.bundle_sync import Backoff, Reconnect


def test_delays_grow_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert all(2.0 <= d <= 4.0 for d in delays[3:])
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_a_client_getting_through_wakes_the_others_from_their_back_off() -> None:
    reconnect = Reconnect()
    shipper, sync = Backoff(reconnect=reconnect), Backoff(reconnect=reconnect)
    sync.next_delay()  # sync has failed once, so its reset announces the reconnect

    sleeping = asyncio.create_task(shipper.sleep(30.0))
    await asyncio.sleep(0.05)
    assert not sleeping.done()
    sync.reset()
    await asyncio.wait_for(sleeping, 2.0)  # not the 30 s it asked for


async def test_a_reset_without_a_failure_wakes_nobody() -> None:
    reconnect = Reconnect()
    shipper, healthy = Backoff(reconnect=reconnect), Backoff(reconnect=reconnect)
    sleeping = asyncio.create_task(shipper.sleep(0.3))
    await asyncio.sleep(0.05)
    healthy.reset()  # every successful call resets; only a recovery may wake the others
    await asyncio.sleep(0.1)
    assert not sleeping.done()
    await sleeping
