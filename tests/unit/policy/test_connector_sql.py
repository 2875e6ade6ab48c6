"""The SQL a connector is asked to run: its operation and every table, or a refusal."""

from __future__ import annotations

import pytest

from policy.connectors import ParsedSql, SqlRefused, parse_sql


@pytest.mark.parametrize(
    ("sql", "operation", "tables"),
    [
        ("SELECT * FROM orders", "read", ("public.orders",)),
        (
            "select o.id from orders o join sales.customers c on c.id = o.cid",
            "read",
            ("public.orders", "sales.customers"),
        ),
        ("SELECT 1", "read", ()),
        ("SELECT id FROM a UNION SELECT id FROM b", "read", ("public.a", "public.b")),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", "read", ("public.t", "public.u")),
        ("WITH x AS (SELECT * FROM t) SELECT * FROM x", "read", ("public.t",)),
        ("INSERT INTO t (a) VALUES (1)", "write", ("public.t",)),
        ("INSERT INTO t SELECT * FROM u", "write", ("public.t", "public.u")),
        ("UPDATE s.t SET a = 1 WHERE b IN (SELECT b FROM u)", "write", ("public.u", "s.t")),
        ("DELETE FROM t", "write", ("public.t",)),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "write", ("public.t",)),
        ("SELECT * FROM t FOR UPDATE", "write", ("public.t",)),
        ("SELECT 1; ", "read", ()),  # one statement and a trailing separator
    ],
)
def test_operation_and_every_table(sql: str, operation: str, tables: tuple[str, ...]) -> None:
    parsed = parse_sql(sql, "postgres", "public")
    assert (parsed.operation, parsed.tables) == (operation, tables)


W, R = "write", "read"


@pytest.mark.parametrize(
    ("sql", "dialect", "checks"),
    [
        ("INSERT INTO t (a) SELECT a FROM u", "postgres", ((W, "s.t"), (R, "s.u"))),
        ("UPDATE t SET a = 1 FROM u WHERE t.id = u.id", "postgres", ((W, "s.t"), (R, "s.u"))),
        ("DELETE FROM t USING u WHERE t.id = u.id", "postgres", ((W, "s.t"), (R, "s.u"))),
        ("DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", "mysql", ((W, "s.t1"), (R, "s.t2"))),
        # a multi-table UPDATE may write any table it joins
        ("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = 1", "mysql", ((W, "s.t1"), (W, "s.t2"))),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = 1 "
            "WHEN NOT MATCHED THEN INSERT (a) VALUES (1)",
            "postgres",
            ((W, "s.t"), (R, "s.u")),
        ),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d JOIN u ON true",
            "postgres",
            ((W, "s.t"), (R, "s.u")),
        ),
        ("SELECT * FROM t JOIN u ON true FOR UPDATE", "postgres", ((W, "s.t"), (W, "s.u"))),
        ("SELECT 1", "postgres", ((R, None),)),
        ("DELETE FROM t WHERE false", "postgres", ((W, "s.t"),)),
    ],
)
def test_each_table_is_checked_for_what_the_statement_does_to_it(
    sql: str, dialect: str, checks: tuple[tuple[str, str | None], ...]
) -> None:
    assert parse_sql(sql, dialect, "s").checks() == checks


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        # a non-recursive CTE's body sees the real table of the same name
        ("WITH salaries AS (SELECT * FROM salaries) SELECT * FROM salaries", ("public.salaries",)),
        # ... and not a CTE defined after it
        ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", ("public.b",)),
        ("WITH b AS (SELECT 1), a AS (SELECT * FROM b) SELECT * FROM a", ()),
        ("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r", ()),
        # a CTE inside a subquery does not hide a table of its name outside it
        ("SELECT * FROM (WITH q AS (SELECT 1) SELECT * FROM q) z, q", ("public.q",)),
    ],
)
def test_cte_names_hide_tables_only_where_the_database_would(
    sql: str, tables: tuple[str, ...]
) -> None:
    assert parse_sql(sql, "postgres", "public").tables == tables


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty"),
        ("-- only a comment", "no statement"),
        ("SELEC * FROM t", "does not parse"),
        ("SELECT * FROM t; DELETE FROM t", "2 statements"),
        ("DROP TABLE t", "statement type DROP"),
        ("SET search_path = secret", "statement type SET"),
        ("COPY t FROM STDIN", "statement type COPY"),
        ("SELECT * INTO copy_of_t FROM t", "SELECT … INTO"),
        ("SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", "table functions"),
        ("SELECT * FROM pg_authid", "pg_catalog"),
        ("SELECT * FROM other_db.public.t", "catalog"),
    ],
)
def test_what_is_refused_says_why(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as refused:
        parse_sql(sql, "postgres", "public")
    assert reason in refused.value.reason


def test_postgres_names_are_read_as_the_database_reads_them() -> None:
    parsed = parse_sql(
        'SELECT * FROM Public.SALARIES JOIN "orders" USING (id)', "postgres", "public"
    )
    assert parsed.tables == ("public.orders", "public.salaries")


@pytest.mark.parametrize(
    ("sql", "dialect", "reason"),
    [
        ("SELECT * FROM SALARIES", "mysql", "lowercase"),
        ('SELECT * FROM "my table"', "postgres", "cannot be named in a policy"),
        ('SELECT * FROM "Salaries"', "postgres", None),  # quoted: a name of its own, kept
    ],
)
def test_names_a_policy_could_not_tell_apart_are_refused(
    sql: str, dialect: str, reason: str | None
) -> None:
    if reason is None:
        assert parse_sql(sql, dialect, "public").tables == ("public.Salaries",)
        return
    with pytest.raises(SqlRefused) as refused:
        parse_sql(sql, dialect, "public")
    assert reason in refused.value.reason


def test_mysql_names_the_database_for_unqualified_tables() -> None:
    parsed = parse_sql("SELECT * FROM shop.orders JOIN items USING (id)", "mysql", "shop")
    assert parsed == ParsedSql("read", "SELECT", ("shop.items", "shop.orders"))
