"""gateways, instances, decision logs and executions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 17:45:57.493255
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
    with op.batch_alter_table("decision_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decision_logs_gateway_id"), ["gateway_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decision_logs_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_decision_logs_outcome"), ["outcome"], unique=False)
        batch_op.create_index(batch_op.f("ix_decision_logs_principal"), ["principal"], unique=False)
        batch_op.create_index(batch_op.f("ix_decision_logs_time"), ["time"], unique=False)

    op.create_table(
        "executions",
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=True),
        sa.Column("principal", sa.String(length=320), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("decision_id", sa.String(length=64), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_executions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint(
            "organization_id",
            "execution_id",
            name=op.f("uq_executions_organization_id_execution_id"),
        ),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_executions_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_executions_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_executions_principal"), ["principal"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_time"), ["time"], unique=False)

    op.create_table(
        "gateways",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("credential_prefix", sa.String(length=16), nullable=False),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_gateways_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_gateways_credential_hash")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_gateways_organization_id_name")
        ),
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gateways_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "gateway_instances",
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("bundle_revision", sa.BigInteger(), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("last_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("log_backlog", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_instances_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_gateway_instances_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_instances")),
        sa.UniqueConstraint(
            "gateway_id", "instance", name=op.f("uq_gateway_instances_gateway_id_instance")
        ),
    )
    with op.batch_alter_table("gateway_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gateway_instances_gateway_id"), ["gateway_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gateway_instances_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_instances_organization_id"))
        batch_op.drop_index(batch_op.f("ix_gateway_instances_gateway_id"))

    op.drop_table("gateway_instances")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateways_organization_id"))

    op.drop_table("gateways")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_executions_time"))
        batch_op.drop_index(batch_op.f("ix_executions_principal"))
        batch_op.drop_index(batch_op.f("ix_executions_organization_id"))
        batch_op.drop_index(batch_op.f("ix_executions_name"))
        batch_op.drop_index(batch_op.f("ix_executions_gateway_id"))

    op.drop_table("executions")
    with op.batch_alter_table("decision_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_logs_time"))
        batch_op.drop_index(batch_op.f("ix_decision_logs_principal"))
        batch_op.drop_index(batch_op.f("ix_decision_logs_outcome"))
        batch_op.drop_index(batch_op.f("ix_decision_logs_organization_id"))
        batch_op.drop_index(batch_op.f("ix_decision_logs_gateway_id"))

    op.drop_table("decision_logs")
