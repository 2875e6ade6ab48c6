"""Fixed-window rate limits on the key-value store (shared across replicas with Redis)."""

from __future__ import annotations

from control_plane.errors import RateLimited
from control_plane.services.kv import KeyValueStore


async def hit(kv: KeyValueStore, key: str, *, limit: int, window: int, what: str) -> None:
    """Count one attempt at `key`; past `limit` in `window` seconds, refuse with 429."""
    count = await kv.incr(f"ratelimit:{key}", ttl=window)
    if count > limit:
        retry_after = max(1, await kv.ttl(f"ratelimit:{key}"))
        raise RateLimited(
            f"too many {what}: the limit is {limit} per {window} s; try again in {retry_after} s",
            retry_after=retry_after,
        )


async def reset(kv: KeyValueStore, key: str) -> None:
    await kv.delete(f"ratelimit:{key}")
