"""A transaction PostgreSQL ends for a concurrent one is a 503 to retry, never a 500.

PostgreSQL resolves a deadlock (or a serialization failure, or a lock it could not take)
by ending one of the transactions, and expects the client to try again; the transaction
rolled back, so nothing was written. The app answers such a request 503 `unavailable` with
`Retry-After`, through the one error table; any other database error stays a 500 that
says nothing of the database. The deadlock here is a real one, made by two connections
taking two advisory locks in opposite orders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from control_plane.app import create_app
from tests.conftest import POSTGRES_URL


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(POSTGRES_URL)
    yield engine
    await engine.dispose()


async def _locks(engine: AsyncEngine, first: int, second: int, started: asyncio.Event) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": first})
        started.set()
        await asyncio.sleep(0.2)  # both hold their first lock before either asks for a second
        await connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": second})


def _app(engine: AsyncEngine) -> FastAPI:
    app = create_app()

    @app.post("/test-only/deadlock")
    async def deadlock() -> dict[str, str]:
        one, two = asyncio.Event(), asyncio.Event()
        await asyncio.gather(
            _locks(engine, 9_100_001, 9_100_002, one), _locks(engine, 9_100_002, 9_100_001, two)
        )
        return {"status": "no deadlock"}

    @app.post("/test-only/broken")
    async def broken() -> dict[str, str]:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1 / 0"))
        return {"status": "unreachable"}

    return app


async def test_a_real_deadlock_is_a_503_to_retry(
    engine: AsyncEngine, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    transport = httpx.ASGITransport(app=_app(engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/test-only/deadlock")
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        error = answer.json()["error"]
        assert error["code"] == "unavailable"
        assert "retry" in error["message"]
        assert "deadlock" not in answer.text  # nothing of the database's own words

        other = await client.post("/test-only/broken")
        assert other.status_code == 500
        assert other.json()["error"]["code"] == "internal"
        assert "division" not in other.text
