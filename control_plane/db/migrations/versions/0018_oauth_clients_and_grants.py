"""OAuth clients, grants and settings of the MCP authorization server (M11)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
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
        "oauth_clients",
        sa.Column("client_id", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("client_name", sa.String(length=200), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("client_metadata", sa.JSON(), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        *_tenant("oauth_clients"),
        sa.UniqueConstraint(
            "organization_id", "client_id", name=op.f("uq_oauth_clients_organization_id_client_id")
        ),
    )
    op.create_table(
        "oauth_grants",
        sa.Column("client_ref", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("resource", sa.String(length=2048), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        *_tenant("oauth_grants"),
        sa.ForeignKeyConstraint(
            ["client_ref"],
            ["oauth_clients.id"],
            name=op.f("fk_oauth_grants_client_ref_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_grants_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_oauth_grants_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", name=op.f("uq_oauth_grants_session_id")),
    )
    op.create_table(
        "oauth_settings",
        sa.Column("dynamic_registration", sa.Boolean(), nullable=False),
        sa.Column("metadata_documents", sa.Boolean(), nullable=False),
        *_tenant("oauth_settings"),
        sa.UniqueConstraint("organization_id", name=op.f("uq_oauth_settings_organization_id")),
    )
    for table, columns in (
        ("oauth_clients", ["organization_id"]),
        ("oauth_grants", ["organization_id", "client_ref", "user_id", "gateway_id"]),
        ("oauth_settings", ["organization_id"]),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade() -> None:
    for table in ("oauth_grants", "oauth_settings", "oauth_clients"):
        op.drop_table(table)
