"""What a SQL statement does, before anyone runs it: its operation and every table it touches.

Parsed with `sqlglot` in the connector's dialect. Exactly one statement of a known kind
is accepted: SELECT (and UNION/INTERSECT/EXCEPT) is a `read`; INSERT, UPDATE, DELETE and
MERGE, a data-modifying CTE and `SELECT … FOR UPDATE/SHARE` are a `write`. Anything else —
text that does not parse, several statements, DDL, SET, COPY, CALL, `SELECT … INTO`,
table functions in FROM — is refused with the reason (`SqlRefused`), never guessed at.

Every table is named `<schema>.<name>` as the database reads it (PostgreSQL folds unquoted
names to lowercase; MySQL names must be written in lowercase, since whether case matters
there depends on the server; names outside `[A-Za-z_][A-Za-z0-9_$]*` are refused, as no
policy object could name them): an unqualified name is the connector's default
schema (the session pins it: PostgreSQL `search_path`, MySQL the database). Where the
answer is ambiguous the statement is refused rather than a table left out: on PostgreSQL
an unqualified `pg_*` name (the catalog is searched first), and references to a CTE are
resolved the way the databases do (a non-recursive CTE sees only those defined before it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

Operation = Literal["read", "write"]
MAX_SQL_CHARS = 100_000
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_READS = (exp.Select, exp.SetOperation)
# What a policy object `table:<schema>.<name>` can name (and the sidecar's route accepts).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


class SqlRefused(Exception):
    """The statement is not one a connector runs; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedSql:
    operation: Operation  # of the statement: what session it runs in
    statement: str  # SELECT, INSERT, UPDATE, DELETE, MERGE
    tables: tuple[str, ...]  # `<schema>.<name>`, sorted, each once
    writes: tuple[str, ...] = ()  # those of `tables` it writes (or locks); the others it reads

    def checks(self) -> tuple[tuple[Operation, str | None], ...]:
        """One (operation, table) per table — `INSERT INTO t SELECT … FROM u` writes t and
        reads u — or the statement's operation alone when it touches no table."""
        if not self.tables:
            return ((self.operation, None),)
        return tuple(("write" if t in self.writes else "read", t) for t in self.tables)


def parse_sql(sql: str, dialect: str, default_schema: str) -> ParsedSql:
    """The operation and tables of one statement in `dialect`; SqlRefused otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("the SQL is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as error:
        raise SqlRefused(f"the SQL does not parse: {str(error).splitlines()[0][:300]}") from None
    if not statements:
        raise SqlRefused("the SQL holds no statement")
    if len(statements) > 1:
        raise SqlRefused(f"the SQL holds {len(statements)} statements; send exactly one")
    # As the database reads names: PostgreSQL folds unquoted ones to lowercase.
    root = normalize_identifiers(statements[0], dialect=dialect)
    operation, statement = _operation(root)
    real = _real_tables(root)
    tables = sorted({_qualified(t, dialect, default_schema) for t in real})
    written = {_qualified(t, dialect, default_schema) for t in _written(root) if t in real}
    return ParsedSql(operation, statement, tuple(tables), tuple(sorted(written)))


def _operation(root: exp.Expr) -> tuple[Operation, str]:
    if isinstance(root, _WRITES):
        return "write", root.key.upper()
    if not isinstance(root, _READS):
        kind = root.key.upper() if root.key else type(root).__name__.upper()
        raise SqlRefused(
            f"statement type {kind} is not run through a connector "
            "(only SELECT, INSERT, UPDATE, DELETE, MERGE)"
        )
    if any(isinstance(s, exp.Select) and s.args.get("into") for s in root.find_all(exp.Select)):
        raise SqlRefused("SELECT … INTO creates a table; it is not run through a connector")
    if next(root.find_all(*_WRITES), None) is not None:
        return "write", "SELECT"  # a data-modifying CTE
    if any(s.args.get("locks") for s in root.find_all(exp.Select)):
        return "write", "SELECT"  # FOR UPDATE / FOR SHARE lock rows
    return "read", "SELECT"


def _written(root: exp.Expr) -> list[exp.Table]:
    """The tables a statement writes: each INSERT/UPDATE/DELETE/MERGE target (all tables of
    a MySQL multi-table UPDATE/DELETE join), and every table a locking SELECT reads."""
    out: list[exp.Table] = []
    for node in root.find_all(*_WRITES):
        if not isinstance(node, exp.Merge) and node.find_ancestor(exp.Merge) is not None:
            continue  # a MERGE's WHEN … UPDATE/INSERT/DELETE: the MERGE's target
        targets = node.args.get("tables") if isinstance(node, exp.Delete) else None
        target = node.this.this if isinstance(node.this, exp.Schema) else node.this
        if targets:
            out.extend(t for t in targets if isinstance(t, exp.Table))
        elif isinstance(target, exp.Table):
            out.extend(target.find_all(exp.Table) if target.args.get("joins") else [target])
        else:
            raise SqlRefused(f"cannot tell which table this {node.key.upper()} writes")
    for select in root.find_all(exp.Select):
        if select.args.get("locks"):
            out.extend(select.find_all(exp.Table))
    return out


def _real_tables(root: exp.Expr) -> list[exp.Table]:
    """Every table node that names a relation of the database, not a CTE."""
    found = []
    for table in root.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise SqlRefused("table functions in FROM are not run through a connector")
        if table.db or table.catalog or not _is_cte_reference(table):
            found.append(table)
    return found


def _is_cte_reference(table: exp.Table) -> bool:
    """True when an unqualified name resolves to a CTE visible where it is written."""
    name = table.name.lower()
    via_cte: exp.Expr | None = None  # the CTE definition the walk came up through
    node: exp.Expr | None = table
    while node is not None:
        if isinstance(node, exp.CTE):
            via_cte = node
        with_ = node.args.get("with_") or node.args.get("with")
        if isinstance(with_, exp.With):
            ctes = list(with_.expressions)
            names = [c.alias_or_name.lower() for c in ctes]
            if via_cte in ctes and not with_.args.get("recursive"):
                visible = names[: ctes.index(via_cte)]  # only those defined before it
            else:
                visible = names
            if name in visible:
                return True
            via_cte = None
        node = node.parent
    return False


def _qualified(table: exp.Table, dialect: str, default_schema: str) -> str:
    if table.catalog:
        raise SqlRefused(
            f"table {table.sql(dialect=dialect)} names a catalog; use <schema>.<table>"
        )
    name = table.name
    if not table.db and dialect == "postgres" and name.lower().startswith("pg_"):
        raise SqlRefused(
            f"table {name} is unqualified and PostgreSQL looks in pg_catalog first; name its schema"
        )
    schema = table.db or default_schema
    for part in (schema, name):
        if not IDENTIFIER.fullmatch(part):
            raise SqlRefused(
                f"name {part!r} cannot be named in a policy (letters, digits, '_', '$'; at most 63)"
            )
        if dialect == "mysql" and part != part.lower():
            raise SqlRefused(
                f"write MySQL name {part!r} in lowercase (whether case matters depends on the "
                "server, so a policy could not tell which table it is)"
            )
    return f"{schema}.{name}"
