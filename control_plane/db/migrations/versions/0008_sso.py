"""OIDC and SAML single sign-on (M7)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_columns(table: str) -> list[Any]:
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
        "sso_providers",
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("preset", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=True),
        sa.Column("discovery_url", sa.String(length=2048), nullable=True),
        sa.Column("client_id", sa.String(length=512), nullable=True),
        sa.Column("has_client_secret", sa.Boolean(), nullable=False),
        sa.Column("saml_idp_metadata", sa.Text(), nullable=True),
        sa.Column("saml_idp_entity_id", sa.String(length=2048), nullable=True),
        sa.Column("saml_idp_sso_url", sa.String(length=2048), nullable=True),
        sa.Column("saml_idp_certificate", sa.Text(), nullable=True),
        sa.Column("saml_sp_certificate", sa.Text(), nullable=True),
        sa.Column("groups_claim", sa.String(length=100), nullable=False),
        sa.Column("group_mapping", sa.JSON(), nullable=False),
        sa.Column("default_role", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant_columns("sso_providers"),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_sso_providers_organization_id_name")
        ),
    )
    with op.batch_alter_table("sso_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_providers_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "sso_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        *_tenant_columns("sso_domains"),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sso_providers.id"],
            name=op.f("fk_sso_domains_provider_id_sso_providers"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("domain", name=op.f("uq_sso_domains_domain")),
    )
    with op.batch_alter_table("sso_domains", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_domains_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sso_domains_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "sso_settings",
        sa.Column("sso_required", sa.Boolean(), nullable=False),
        sa.Column("break_glass_user_ids", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant_columns("sso_settings"),
        sa.UniqueConstraint("organization_id", name=op.f("uq_sso_settings_organization_id")),
    )
    with op.batch_alter_table("sso_settings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_settings_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("sso_settings")
    op.drop_table("sso_domains")
    op.drop_table("sso_providers")
