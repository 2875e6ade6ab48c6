"""Shared fixtures: the control plane on both of its stacks.

`embedded`: SQLite file + in-process store (what `kaizen-studio up` runs).
`production`: the real PostgreSQL + the real Redis (KAIZEN_TEST_POSTGRES_URL /
KAIZEN_TEST_REDIS_URL). Never skipped: if they are down, the tests fail and say why.

The suite also fails if any process it started is still running at its end (see
`no_process_outlives_the_suite`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from control_plane.app import create_app
from control_plane.db.base import Base
from control_plane.db.session import SYSTEM
from control_plane.services import passwords
from control_plane.settings import Settings
from tests.e2e import sidecar_procs as procs
from tests.object_stores import azurite, moto_s3

# The emulators are session fixtures here, one of each per run (moto's state is global to
# the process: a second server would share it).
__all__ = ["azurite", "moto_s3"]

POSTGRES_URL = os.environ.get(
    "KAIZEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Each test run works in its own Redis key prefix and its own PostgreSQL database.
RUN_ID = secrets.token_hex(4)
REDIS_PREFIX = f"kaizen-test-{RUN_ID}:"
PASSWORD = "correct horse battery staple"


_PR_SET_CHILD_SUBREAPER = 36


def running_descendants(root: int) -> dict[int, str]:
    """Every live (non-zombie) process below `root`, by pid, with its command line (/proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name sits in parentheses and may hold spaces: split after the last ")".
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if state not in ("Z", "X"):
            children.setdefault(int(parent), []).append(int(entry.name))
    found: dict[int, str] = {}
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        found[pid] = command.replace(b"\0", b" ").decode(errors="replace").strip()
        pending.extend(children.get(pid, []))
    return found


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """A runtime's `main` run in-process (a CLI test) points the root logger at that test's
    captured stderr, at INFO; once pytest closes that stream, every later log record fails
    ("I/O operation on closed file") into whatever the next test captures. Put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite() -> Iterator[None]:
    """Fail the run, naming them, if processes the tests started are still running at its end.

    pytest becomes a child subreaper, so a process orphaned by its parent (a killed
    `kaizen-studio up` whose control plane lives on) is re-parented here and still counted.
    The survivors are killed after being named, so a failed run leaves nothing behind either.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    survivors = running_descendants(os.getpid())
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if survivors:
        listed = "\n".join(f"  {pid}: {command}" for pid, command in sorted(survivors.items()))
        pytest.fail(f"processes started by the tests were still running at the end:\n{listed}")


# The control plane's own hasher, at the production cost (`cheap_password_hashing` swaps it).
PRODUCTION_HASHER = passwords._hasher


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2id at a test's cost in the control planes the tests run in-process.

    At its production cost (64 MiB, 3 passes) a hash or a check takes 50-500 ms of CPU, and
    the in-process suites do ~1,500 (every sign-up, member and login): minutes of the run.
    The algorithm and the code paths are the same; only the cost parameters, which the
    hashes carry, differ. The control-plane processes of tests/e2e hash at the production
    cost, and tests/unit/test_passwords.py holds the production parameters."""
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    passwords._hasher = PRODUCTION_HASHER


class PostgresDatabases:
    """Creates throw-away databases on the test server; drops them all at the end."""

    def __init__(self, admin: asyncpg.Connection):
        self._admin = admin
        self.created: list[str] = []

    async def create(self, purpose: str) -> str:
        name = f"kaizen_test_{RUN_ID}_{purpose}"
        await self._admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
async def postgres_databases() -> AsyncIterator[PostgresDatabases]:
    admin_dsn = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    try:
        admin = await asyncpg.connect(admin_dsn)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {error}")
    databases = PostgresDatabases(admin)
    try:
        yield databases
    finally:
        for name in databases.created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("api")


@pytest.fixture(scope="session")
async def redis_url() -> str:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except aioredis.RedisError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    finally:
        await client.aclose()
    return REDIS_URL


def running_control_plane(
    database: str, home: Path, env: dict[str, str] | None = None, **settings: str
) -> Iterator[procs.ControlPlane]:
    """`kaizen-studio control-plane` on `database`, the test Redis (a prefix of its own) and
    a master key of its own, with `KAIZEN_<NAME>` for each further setting and `env` as
    given (e.g. VAULT_ADDR); stopped after."""
    cp = procs.ControlPlane.configured(
        home,
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        **settings,
    )
    cp.env.update(env or {})
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
async def shared_control_plane_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("e2e_shared")


@pytest.fixture(scope="session")
def shared_control_plane(
    shared_control_plane_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[procs.ControlPlane]:
    """One control-plane process for the tests of tests/security and tests/e2e that neither
    stop it nor change its settings (a process costs ~2 s of CPU to start). Each test signs
    up organisations of its own under names and emails no other test uses
    (tests/e2e/accounts.py `unique`), so none sees another's data; `kaizen-studio org
    set-plan` and `keys rotate` name their organisation. Sign-ups and logins all come from
    127.0.0.1: the per-address limit is raised, as for the in-process stacks
    (tests/integration/test_auth.py tests the limit). A test that needs a process of its
    own takes tests/e2e/conftest.py `control_plane`."""
    home = tmp_path_factory.mktemp("shared-cp")
    yield from running_control_plane(
        shared_control_plane_database, home, login_attempts_per_window="1000"
    )


# The test doubles the platform fetches (webhook receivers, the local IdPs, the fake LLM)
# listen on 127.0.0.1, which the outbound guard refuses by default: the test stacks use the
# operator allowance for it (tests/security proves the default refuses it).
OUTBOUND_ALLOWANCE = "127.0.0.1/32"


def make_settings(home: Path, **overrides: Any) -> Settings:
    overrides.setdefault("outbound_allow_cidrs", OUTBOUND_ALLOWANCE)
    # Tests drive the notifier themselves (`notifier.run_once()`) and assert on what a round
    # did: a background round every second would do their work first.
    overrides.setdefault("notification_poll_seconds", 3600)
    overrides.setdefault("billing_poll_seconds", 3600)  # likewise `billing_worker.run_once()`
    # Organisations the tests sign up are on Enterprise (no limits): they exercise features,
    # not quotas; the plan tests (tests/integration/test_plans*.py) put theirs on Free.
    overrides.setdefault("default_plan", "enterprise")
    return Settings(
        home=home,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_json=False,
        **overrides,
    )


@dataclass
class Stack:
    name: str
    app: FastAPI
    settings: Settings

    @property
    def db(self) -> Any:
        return self.app.state.db

    @property
    def kv(self) -> Any:
        return self.app.state.kv


async def _running_stack(name: str, settings: Settings) -> AsyncIterator[Stack]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield Stack(name, app, settings)


@pytest.fixture(scope="session")
async def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("embedded")
    async for stack in _running_stack("embedded", make_settings(home)):
        yield stack


@pytest.fixture(scope="session")
async def production_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str, redis_url: str
) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("production")
    settings = make_settings(
        home, database_url=postgres_database, redis_url=redis_url, redis_prefix=REDIS_PREFIX
    )
    async for stack in _running_stack("production", settings):
        yield stack


async def _reset(stack: Stack) -> None:
    """Empty every table but the key ring, and the key-value store.

    DELETE, children before parents, on both databases: a test leaves a few rows, and
    PostgreSQL deletes those in milliseconds, where TRUNCATE of all the tables gives each a
    new file to sync at commit (~1 s a test, minutes over the suite)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "signing_keys"]
    # The app's background workers (webhook outbox, approval expiry, replay runner) may hold
    # a row lock the reset waits on while they wait on one of its own; PostgreSQL then picks
    # one side of the deadlock to fail. The reset is the side to retry.
    for attempt in range(5):
        try:
            async with stack.db.session(SYSTEM) as session:
                for table in tables:
                    await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608
            break
        except DBAPIError as error:
            if attempt == 4 or "deadlock" not in str(error):
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
    if stack.settings.redis_url:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        keys = [k async for k in client.scan_iter(f"{REDIS_PREFIX}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    else:
        await stack.kv.close()


@pytest.fixture(params=["embedded", "production"])
async def stack(
    request: pytest.FixtureRequest, embedded_stack: Stack, production_stack: Stack
) -> Stack:
    chosen = embedded_stack if request.param == "embedded" else production_stack
    await _reset(chosen)
    return chosen


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stack.app, client=("203.0.113.7", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as http:
        yield http


@dataclass
class Account:
    email: str
    user_id: str
    organization_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def signup(client: httpx.AsyncClient, organization: str = "Acme") -> Account:
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization": organization},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        email,
        body["user_id"],
        body["organization_id"],
        body["access_token"],
        body["refresh_token"],
    )


async def member(client: httpx.AsyncClient, owner: Account, role: str) -> Account:
    """A new member of `owner`'s organisation with `role`, logged in."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "role": role},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return Account(
        email, body["user_id"], body["organization_id"], body["access_token"], body["refresh_token"]
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    return await signup(client)
