"""Seeded databases for the connector tests: a fresh PostgreSQL database and a fresh
MariaDB database + user (with a password) per test module, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomysql
import asyncpg
import pytest

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
MY_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
SEED = [
    "CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(10,2))",
    "CREATE TABLE customers (id int PRIMARY KEY, name text)",
    "CREATE TABLE salaries (id int PRIMARY KEY, name text, salary int)",
    "INSERT INTO orders VALUES (1, 'ada', 10.50), (2, 'bob', 20.00), (3, 'ada', 5.25)",
    "INSERT INTO customers VALUES (1, 'ada'), (2, 'bob')",
    "INSERT INTO salaries VALUES (1, 'ada', 100000)",
]
# A function that writes, called by a statement that parses as a read.
PG_WIPE = (
    "CREATE FUNCTION wipe_orders() RETURNS int AS 'DELETE FROM orders RETURNING 1' LANGUAGE sql"
)
MY_WIPE = (
    "CREATE FUNCTION wipe_orders() RETURNS int MODIFIES SQL DATA "
    "BEGIN DELETE FROM orders; RETURN 1; END"
)


@dataclass(frozen=True)
class SeededDatabase:
    type: str
    database: str
    username: str
    password: str
    port: int

    def settings(self, **overrides: object) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "database": self.database,
            "username": self.username,
            "tls": "disable",
            **overrides,
        }


@pytest.fixture(scope="module")
async def seeded_postgres() -> AsyncIterator[SeededDatabase]:
    """PostgreSQL here trusts 127.0.0.1, so any password authenticates (see README)."""
    name = f"kz_conn_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(**PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    seeded = await asyncpg.connect(**{**PG_ADMIN, "database": name})
    for statement in (*SEED, PG_WIPE):
        await seeded.execute(statement)
    await seeded.close()
    try:
        yield SeededDatabase("postgresql", name, "postgres", "pg-connector-password", 5432)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
async def seeded_mariadb() -> AsyncIterator[SeededDatabase]:
    name = f"kz_conn_{uuid.uuid4().hex[:10]}"
    password = f"my-{uuid.uuid4().hex}"
    admin = await aiomysql.connect(**MY_ADMIN, autocommit=True)
    async with admin.cursor() as cursor:
        await cursor.execute(f"CREATE DATABASE `{name}`")
        await cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        await cursor.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'%'")
        await cursor.execute(f"USE `{name}`")
        for statement in (*SEED, MY_WIPE):
            await cursor.execute(statement)
    try:
        yield SeededDatabase("mysql", name, name, password, 3306)
    finally:
        async with admin.cursor() as cursor:
            await cursor.execute(f"DROP DATABASE `{name}`")
            await cursor.execute(f"DROP USER '{name}'@'%'")
        admin.close()
