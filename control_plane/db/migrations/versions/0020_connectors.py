"""Data connectors and their settings versions (M14)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 07:40:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant(table: str) -> list[Any]:
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
        "connectors",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("credential_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant("connectors"),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_connectors_organization_id_name")
        ),
    )
    op.create_table(
        "connector_versions",
        sa.Column("connector_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        *_tenant("connector_versions"),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_connector_versions_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "connector_id", "version", name=op.f("uq_connector_versions_connector_id_version")
        ),
    )
    for table, columns in (
        ("connectors", ["organization_id"]),
        ("connector_versions", ["organization_id", "connector_id"]),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade() -> None:
    for table in ("connector_versions", "connectors"):
        op.drop_table(table)
