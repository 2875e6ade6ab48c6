"""agents, pipelines and deployments (M4)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _common(table: str) -> list[Any]:
    """`organization_id`, `id`, `created_at` and their constraints, as `TenantScoped` + `Base`."""
    return [
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f(f"fk_{table}_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "workloads",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_common("workloads"),
        sa.UniqueConstraint(
            "organization_id", "kind", "name", name=op.f("uq_workloads_organization_id_kind_name")
        ),
    )
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workloads_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "workload_versions",
        sa.Column("workload_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        *_common("workload_versions"),
        sa.ForeignKeyConstraint(
            ["workload_id"],
            ["workloads.id"],
            name=op.f("fk_workload_versions_workload_id_workloads"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workload_id", "version", name=op.f("uq_workload_versions_workload_id_version")
        ),
    )
    with op.batch_alter_table("workload_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workload_versions_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workload_versions_workload_id"), ["workload_id"], unique=False
        )

    op.create_table(
        "deployments",
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("workload_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("requires", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_common("deployments"),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_deployments_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workload_id"],
            ["workloads.id"],
            name=op.f("fk_deployments_workload_id_workloads"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "gateway_id", "kind", "name", name=op.f("uq_deployments_gateway_id_kind_name")
        ),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployments_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deployments_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deployments_workload_id"), ["workload_id"], unique=False
        )


def downgrade() -> None:
    for table, indexes in (
        ("deployments", ("workload_id", "organization_id", "gateway_id")),
        ("workload_versions", ("workload_id", "organization_id")),
        ("workloads", ("organization_id",)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in indexes:
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
        op.drop_table(table)
