"""verified organisation email domains and SSO account links (M8)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
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
        "organization_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        *_tenant_columns("organization_domains"),
        sa.UniqueConstraint(
            "organization_id",
            "domain",
            name=op.f("uq_organization_domains_organization_id_domain"),
        ),
    )
    with op.batch_alter_table("organization_domains", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organization_domains_organization_id"),
            ["organization_id"],
            unique=False,
        )
        batch_op.create_index(
            "uq_organization_domains_verified_domain",
            ["domain"],
            unique=True,
            postgresql_where=sa.text("verified_at IS NOT NULL"),
            sqlite_where=sa.text("verified_at IS NOT NULL"),
        )
    op.create_table(
        "sso_links",
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("proof", sa.String(length=16), nullable=False),
        *_tenant_columns("sso_links"),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sso_providers.id"],
            name=op.f("fk_sso_links_provider_id_sso_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sso_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "provider_id", "subject", name=op.f("uq_sso_links_provider_id_subject")
        ),
        sa.UniqueConstraint(
            "provider_id", "user_id", name=op.f("uq_sso_links_provider_id_user_id")
        ),
    )
    with op.batch_alter_table("sso_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_links_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sso_links_user_id"), ["user_id"], unique=False)
    # No default role any more: JIT provisioning needs a group mapping that names a role.
    op.execute(sa.text("UPDATE sso_providers SET default_role = NULL"))


def downgrade() -> None:
    with op.batch_alter_table("sso_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_links_user_id"))
        batch_op.drop_index(batch_op.f("ix_sso_links_organization_id"))
    op.drop_table("sso_links")
    with op.batch_alter_table("organization_domains", schema=None) as batch_op:
        batch_op.drop_index("uq_organization_domains_verified_domain")
        batch_op.drop_index(batch_op.f("ix_organization_domains_organization_id"))
    op.drop_table("organization_domains")
