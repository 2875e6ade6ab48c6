"""budget usage reported by sidecars

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 19:32:22.446662
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_usage",
        sa.Column("budget", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=320), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("used", sa.Double(), nullable=False),
        sa.Column("limit", sa.Double(), nullable=False),
        sa.Column("soft_limit", sa.Double(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_budget_usage_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_usage")),
        sa.UniqueConstraint(
            "organization_id",
            "budget",
            "window",
            name=op.f("uq_budget_usage_organization_id_budget_window"),
        ),
    )
    with op.batch_alter_table("budget_usage", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_budget_usage_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_budget_usage_window"), ["window"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("budget_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budget_usage_window"))
        batch_op.drop_index(batch_op.f("ix_budget_usage_organization_id"))

    op.drop_table("budget_usage")
