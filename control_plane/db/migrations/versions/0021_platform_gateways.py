"""Shared platform gateways and the organisations placed on them (ADR 0012)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_gateways",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("credential_prefix", sa.String(length=16), nullable=False),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_gateways")),
        sa.UniqueConstraint("name", name=op.f("uq_platform_gateways_name")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_platform_gateways_credential_hash")),
    )
    op.create_table(
        "platform_placements",
        sa.Column("platform_gateway_id", sa.Uuid(), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_platform_placements_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_platform_placements_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["platform_gateway_id"],
            ["platform_gateways.id"],
            name=op.f("fk_platform_placements_platform_gateway_id_platform_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_placements")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_platform_placements_organization_id")),
    )
    with op.batch_alter_table("platform_placements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_placements_organization_id"), ["organization_id"]
        )
        batch_op.create_index(
            batch_op.f("ix_platform_placements_platform_gateway_id"), ["platform_gateway_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("platform_placements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_placements_platform_gateway_id"))
        batch_op.drop_index(batch_op.f("ix_platform_placements_organization_id"))
    op.drop_table("platform_placements")
    op.drop_table("platform_gateways")
