"""Short-lived shared state: refresh tokens, revoked sessions, rate-limit counters.

Redis when `KAIZEN_REDIS_URL` is set (every replica sees the same state); otherwise an
in-process store, which is correct only for a single node (the embedded default).
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as redis


class KeyValueStore(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, *, ttl: int) -> None: ...
    async def pop(self, key: str) -> str | None:
        """Delete `key` and return what it held, atomically (single-use tokens)."""
        ...

    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str, *, ttl: int) -> int:
        """Add one; the first increment starts a window of `ttl` seconds."""
        ...

    async def ttl(self, key: str) -> int: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._data[key]
            return None
        return entry[0]

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, *, ttl: int) -> None:
        self._data[key] = (value, time.monotonic() + ttl)
        if len(self._data) > 100_000:
            self._sweep()

    async def pop(self, key: str) -> str | None:
        value = self._live(key)
        self._data.pop(key, None)
        return value

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, *, ttl: int) -> int:
        current = self._live(key)
        if current is None:
            await self.set(key, "1", ttl=ttl)
            return 1
        expires = self._data[key][1]
        self._data[key] = (str(int(current) + 1), expires)
        return int(current) + 1

    async def ttl(self, key: str) -> int:
        if self._live(key) is None:
            return -2
        return max(0, round(self._data[key][1] - time.monotonic()))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._data.items() if expires <= now]:
            del self._data[key]


class RedisStore:
    def __init__(self, url: str, *, prefix: str = "kaizen:"):
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        return _text(await self._redis.get(self._k(key)))

    async def set(self, key: str, value: str, *, ttl: int) -> None:
        await self._redis.set(self._k(key), value, ex=ttl)

    async def pop(self, key: str) -> str | None:
        return _text(await self._redis.getdel(self._k(key)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._k(k) for k in keys))

    async def incr(self, key: str, *, ttl: int) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key))
            pipe.expire(self._k(key), ttl, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def ttl(self, key: str) -> int:
        return int(await self._redis.ttl(self._k(key)))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def open_store(url: str | None, *, prefix: str = "kaizen:") -> KeyValueStore:
    return RedisStore(url, prefix=prefix) if url else MemoryStore()
