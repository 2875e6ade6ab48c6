"""decision-log store: chain, partitions, indexes (M5)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

`decision_logs` (0003) becomes the decision store: on PostgreSQL a table range-partitioned
by `time` (monthly partitions; `time` joins the primary key and the unique key), on SQLite
a plain table; indexes for the auditors' filters; and a hash chain per organisation
(`sequence`, `chain_hash`; heads in `decision_chains`). Rows of 0003 are moved over and
chained in the order they were ingested.

Frozen: the chain format and the partition DDL below are copies of what
`services/decision_chain.py` and `db/partitions.py` did at this revision, so that later
changes there never change what this migration computes (it imports no service code).
`tests/unit/test_migration_0005.py` pins the chain link to a golden value.
"""

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
# Every stored column of a record, as chained at this revision (chain format v1).
CHAINED = (
    "id",
    "organization_id",
    "sequence",
    "decision_id",
    "time",
    "created_at",
    "source",
    "gateway_id",
    "instance",
    "principal",
    "action",
    "resource",
    "workspace",
    "channel",
    "outcome",
    "reasons",
    "bundle_revision",
    "duration_us",
    "input",
    "result",
)
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def link(prev_hash: str, record: dict[str, Any]) -> str:
    """v1: SHA-256(previous hash ‖ the chained columns as sorted, compact, UTF-8 JSON)."""
    document = {name: _plain(record[name]) for name in CHAINED}
    return hashlib.sha256(prev_hash.encode() + _CANONICAL.encode(document).encode()).hexdigest()


def _month(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _create_partitions(bind: sa.Connection, times: list[datetime]) -> None:
    """Monthly partitions `decision_logs_pYYYY_MM` for `times`, each with the month after."""
    if bind.dialect.name != "postgresql":
        return
    months = {m for t in times for m in (_month(t), _next_month(_month(t)))}
    for month in sorted(months):
        bind.execute(
            sa.text(
                f'CREATE TABLE IF NOT EXISTS "decision_logs_p{month.year:04d}_{month.month:02d}" '
                f"PARTITION OF decision_logs FOR VALUES FROM ('{month.isoformat()}') "
                f"TO ('{_next_month(month).isoformat()}')"
            )
        )


_OLD = "decision_logs_0003"
_OLD_COLUMNS = (
    "decision_id, time, gateway_id, instance, principal, action, resource, channel, outcome, "
    "bundle_revision, duration_us, input, result, organization_id, id, created_at"
)
_INDEXES = {
    "ix_decision_logs_organization_id": ["organization_id"],
    "ix_decision_logs_recent": ["organization_id", "time", "decision_id"],
    "ix_decision_logs_sequence": ["organization_id", "sequence"],
    "ix_decision_logs_principal": ["organization_id", "principal", "time"],
    "ix_decision_logs_action": ["organization_id", "action", "time"],
    "ix_decision_logs_resource": ["organization_id", "resource", "time"],
    "ix_decision_logs_outcome": ["organization_id", "outcome", "time"],
    "ix_decision_logs_gateway": ["organization_id", "gateway_id", "time"],
    "ix_decision_logs_workspace": ["organization_id", "workspace", "time"],
    "ix_decision_logs_bundle": ["organization_id", "bundle_revision", "time"],
}


def _old_table() -> sa.Table:
    return sa.Table(
        _OLD,
        sa.MetaData(),
        sa.Column("decision_id", sa.String(64)),
        sa.Column("time", sa.DateTime(timezone=True)),
        sa.Column("gateway_id", sa.Uuid()),
        sa.Column("instance", sa.String(200)),
        sa.Column("principal", sa.String(320)),
        sa.Column("action", sa.String(64)),
        sa.Column("resource", sa.String(320)),
        sa.Column("channel", sa.String(16)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("bundle_revision", sa.String(32)),
        sa.Column("duration_us", sa.BigInteger()),
        sa.Column("input", sa.JSON()),
        sa.Column("result", sa.JSON()),
        sa.Column("organization_id", sa.Uuid()),
        sa.Column("id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )


def _create_store() -> None:
    op.create_table(
        "decision_logs",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=True),
        sa.Column("instance", sa.String(length=200), nullable=True),
        sa.Column("principal", sa.String(length=320), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("resource", sa.String(length=320), nullable=True),
        sa.Column("workspace", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("bundle_revision", sa.String(length=32), nullable=True),
        sa.Column("duration_us", sa.BigInteger(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_decision_logs_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("time", "id", name=op.f("pk_decision_logs")),
        sa.UniqueConstraint(
            "organization_id",
            "decision_id",
            "time",
            name=op.f("uq_decision_logs_organization_id_decision_id_time"),
        ),
        postgresql_partition_by="RANGE (time)",
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "decision_logs", columns, unique=False)
    op.create_table(
        "decision_chains",
        sa.Column("head_sequence", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("expired", sa.JSON(), nullable=False),
        sa.Column("expired_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_decision_chains_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_chains")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_decision_chains_organization_id")),
    )
    op.create_index(
        op.f("ix_decision_chains_organization_id"),
        "decision_chains",
        ["organization_id"],
        unique=False,
    )


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: Any, limit: int) -> str | None:
    return value.replace("\x00", "")[:limit] if isinstance(value, str) else None


def _stored(old: Any) -> dict[str, Any]:
    decision_input = old.input if isinstance(old.input, dict) else {}
    result = old.result if isinstance(old.result, dict) else {}
    resource = decision_input.get("resource")
    reasons = result.get("reasons")
    return {
        "organization_id": old.organization_id,
        "decision_id": old.decision_id,
        "time": _aware(old.time),
        "source": "sidecar",
        "gateway_id": old.gateway_id,
        "instance": old.instance,
        "principal": old.principal,
        "action": old.action,
        "resource": old.resource,
        "workspace": _text(resource.get("workspace"), 100) if isinstance(resource, dict) else None,
        "channel": old.channel,
        "outcome": old.outcome,
        "reasons": _text("\n".join(str(r) for r in reasons), 10_000)
        if isinstance(reasons, list) and reasons
        else None,
        "bundle_revision": old.bundle_revision,
        "duration_us": old.duration_us,
        "input": json.loads(json.dumps(decision_input)),
        "result": json.loads(json.dumps(result)),
        "id": old.id,
        "created_at": _aware(old.created_at),
    }


def _move_rows(bind: sa.Connection) -> None:
    """Copy 0003's rows into the store, each organisation's chained in ingest order."""
    old = _old_table()
    new = sa.table(
        "decision_logs",
        *(sa.column(c) for c in ("sequence", "chain_hash")),
        *(sa.column(c.name, c.type) for c in old.columns),
        sa.column("source"),
        sa.column("workspace"),
        sa.column("reasons"),
    )
    chains = sa.table(
        "decision_chains",
        *(sa.column(c) for c in ("head_sequence", "head_hash", "retention_days")),
        sa.column("organization_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("expired", sa.JSON()),
    )
    times = [_aware(t) for (t,) in bind.execute(sa.select(old.c.time).distinct())]
    now = datetime.now(UTC)
    _create_partitions(bind, [*times, now])
    organizations = [o for (o,) in bind.execute(sa.select(old.c.organization_id).distinct())]
    for organization_id in organizations:
        sequence, prev = 0, GENESIS
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            query = sa.select(old).where(old.c.organization_id == organization_id)
            if after is not None:
                query = query.where(
                    sa.or_(
                        old.c.created_at > after[0],
                        sa.and_(old.c.created_at == after[0], old.c.id > after[1]),
                    )
                )
            batch = bind.execute(query.order_by(old.c.created_at, old.c.id).limit(1000)).all()
            rows = []
            for item in batch:
                row = _stored(item)
                sequence += 1
                row["sequence"] = sequence
                row["chain_hash"] = prev = link(prev, row)
                rows.append(row)
            if rows:
                bind.execute(sa.insert(new), rows)
            if len(batch) < 1000:
                break
            after = (batch[-1].created_at, batch[-1].id)
        bind.execute(
            sa.insert(chains),
            {
                "id": uuid.uuid4(),
                "organization_id": organization_id,
                "created_at": now,
                "head_sequence": sequence,
                "head_hash": prev,
                "retention_days": 365,
                "expired": [],
            },
        )


def upgrade() -> None:
    op.execute(f"CREATE TABLE {_OLD} AS SELECT {_OLD_COLUMNS} FROM decision_logs")  # noqa: S608
    op.drop_table("decision_logs")
    _create_store()
    _move_rows(op.get_bind())
    op.drop_table(_OLD)


def downgrade() -> None:
    op.execute(f"CREATE TABLE {_OLD} AS SELECT {_OLD_COLUMNS} FROM decision_logs")  # noqa: S608
    op.drop_index(op.f("ix_decision_chains_organization_id"), table_name="decision_chains")
    op.drop_table("decision_chains")
    for name in _INDEXES:
        op.drop_index(name, table_name="decision_logs")
    op.drop_table("decision_logs")  # its partitions go with it on PostgreSQL
    op.create_table(
        "decision_logs",
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=True),
        sa.Column("instance", sa.String(length=200), nullable=True),
        sa.Column("principal", sa.String(length=320), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("resource", sa.String(length=320), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("bundle_revision", sa.String(length=32), nullable=True),
        sa.Column("duration_us", sa.BigInteger(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_decision_logs_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_logs")),
        sa.UniqueConstraint(
            "organization_id",
            "decision_id",
            name=op.f("uq_decision_logs_organization_id_decision_id"),
        ),
    )
    for column in ("gateway_id", "organization_id", "outcome", "principal", "time"):
        op.create_index(op.f(f"ix_decision_logs_{column}"), "decision_logs", [column])
    op.execute(f"INSERT INTO decision_logs ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM {_OLD}")  # noqa: S608
    op.drop_table(_OLD)
