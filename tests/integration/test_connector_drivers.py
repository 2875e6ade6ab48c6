"""The PostgreSQL and MySQL/MariaDB connectors against the real databases of this machine:
reads, writes, read-only sessions, limits, and the database's own refusal of a second
statement (defence in depth behind the parser)."""

from __future__ import annotations

import asyncpg
import pytest

from policy.connectors import ConnectionSettings, ConnectorError, ParsedSql, run_sql
from policy.connectors.registry import parse_for
from policy.net.outbound import OutboundGuard
from tests.integration.connector_support import (
    SeededDatabase,
    seeded_mariadb,
    seeded_postgres,
)

__all__ = ["seeded_mariadb", "seeded_postgres"]
LOCAL = OutboundGuard.from_setting("127.0.0.1/32")


@pytest.fixture(params=["postgresql", "mysql"])
def db(
    request: pytest.FixtureRequest,
    seeded_postgres: SeededDatabase,
    seeded_mariadb: SeededDatabase,
) -> SeededDatabase:
    return seeded_postgres if request.param == "postgresql" else seeded_mariadb


def _settings(db: SeededDatabase, **overrides: object) -> ConnectionSettings:
    return ConnectionSettings.from_dict({"type": db.type, **db.settings(**overrides)})


async def _run(settings: ConnectionSettings, password: str, sql: str) -> dict[str, object]:
    result = await run_sql(settings, password, LOCAL, sql, parse_for(settings, sql))
    return result.to_dict()


async def test_a_read_answers_rows_columns_and_tables(db: SeededDatabase) -> None:
    settings = _settings(db)
    answer = await _run(
        settings, db.password, "SELECT id, customer, total FROM orders WHERE id < 3 ORDER BY id"
    )
    assert answer["columns"] == ["id", "customer", "total"]
    assert answer["rows"] == [[1, "ada", "10.50"], [2, "bob", "20.00"]]
    assert answer["tables"] == [f"{settings.default_schema}.orders"]
    assert answer["truncated"] is False


async def test_rows_are_cut_at_max_rows_and_say_so(db: SeededDatabase) -> None:
    answer = await _run(_settings(db, max_rows=2), db.password, "SELECT * FROM orders ORDER BY id")
    assert len(answer["rows"]) == 2  # type: ignore[arg-type]
    assert (answer["truncated"], answer["limit"]) == (True, "max_rows=2")
    assert answer["note"] == "result cut at max_rows=2; 2 rows returned"


async def test_rows_are_cut_at_max_bytes_and_say_so(db: SeededDatabase) -> None:
    answer = await _run(
        _settings(db, max_bytes=40), db.password, "SELECT * FROM orders ORDER BY id"
    )
    assert answer["rows"] == [[1, "ada", "10.50"]]
    assert (answer["truncated"], answer["limit"]) == (True, "max_bytes=40")


async def test_a_write_on_a_read_only_connector_is_refused_before_connecting(
    db: SeededDatabase,
) -> None:
    with pytest.raises(ConnectorError) as refused:
        # a wrong password too: the refusal comes before any connection
        await _run(_settings(db), "wrong", "DELETE FROM orders")
    assert refused.value.code == "read_only"


async def test_a_read_runs_in_a_read_only_session_even_on_a_writable_connector(
    db: SeededDatabase,
) -> None:
    """`SELECT wipe_orders()` parses as a read; the database refuses the write inside it."""
    settings = _settings(db, read_only=False)
    with pytest.raises(ConnectorError) as refused:
        await _run(settings, db.password, "SELECT wipe_orders()")
    assert refused.value.code == "query_failed"
    assert "read-only" in refused.value.message.lower().replace(" ", "-")
    count = await _run(settings, db.password, "SELECT count(*) FROM orders")
    assert count["rows"] == [[3]]


async def test_a_write_on_a_writable_connector_commits(db: SeededDatabase) -> None:
    settings = _settings(db, read_only=False)
    written = await _run(settings, db.password, "UPDATE customers SET name = 'ada l.' WHERE id = 1")
    assert written["operation"] == "write"
    assert written["status"] == "UPDATE 1"
    read = await _run(settings, db.password, "SELECT name FROM customers WHERE id = 1")
    assert read["rows"] == [["ada l."]]
    await _run(settings, db.password, "UPDATE customers SET name = 'ada' WHERE id = 1")


async def test_the_database_runs_one_statement_whatever_the_text_holds(
    db: SeededDatabase,
) -> None:
    """Were the parser fooled into one statement, the driver still sends one: PostgreSQL's
    prepared statements and MySQL without CLIENT_MULTI_STATEMENTS refuse a second."""
    settings = _settings(db, read_only=False)
    fooled = ParsedSql("read", "SELECT", (f"{settings.default_schema}.orders",))
    with pytest.raises(ConnectorError) as refused:
        await run_sql(settings, db.password, LOCAL, "SELECT 1; DELETE FROM orders", fooled)
    assert refused.value.code == "query_failed"
    count = await _run(settings, db.password, "SELECT count(*) FROM orders")
    assert count["rows"] == [[3]]


async def test_a_host_outside_the_guard_is_refused(db: SeededDatabase) -> None:
    settings = _settings(db)
    sql = "SELECT 1"
    with pytest.raises(ConnectorError) as refused:
        await run_sql(settings, db.password, OutboundGuard(), sql, parse_for(settings, sql))
    assert refused.value.code == "refused"
    assert "loopback" in refused.value.message


async def test_postgres_search_path_is_the_default_schema(
    seeded_postgres: SeededDatabase,
) -> None:
    """Unqualified names are qualified with the default schema by the parser, and the session
    resolves them there too: a table of that name in another schema is not read."""
    admin = await asyncpg.connect(
        host="127.0.0.1", user="postgres", database=seeded_postgres.database
    )
    await admin.execute("CREATE SCHEMA IF NOT EXISTS other; CREATE TABLE other.orders (x int)")
    try:
        settings = _settings(seeded_postgres, schema="other")
        answer = await _run(settings, seeded_postgres.password, "SELECT * FROM orders")
        assert (answer["tables"], answer["columns"]) == (["other.orders"], ["x"])
    finally:
        await admin.execute("DROP SCHEMA other CASCADE")
        await admin.close()
