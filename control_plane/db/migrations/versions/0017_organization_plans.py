"""organisation plans (M12): every existing organisation on Enterprise, so nothing changes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 09:00:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    plans = op.create_table(
        "organization_plans",
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_plans_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_plans")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_organization_plans_organization_id")),
    )
    with op.batch_alter_table("organization_plans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organization_plans_organization_id"), ["organization_id"], unique=False
        )
    # Organisations that predate plans keep exactly what they had: no limit at all
    # (Enterprise without overrides). ADR 0007.
    now = datetime.now(UTC)
    organizations = op.get_bind().execute(sa.text("SELECT id FROM organizations")).scalars()
    rows = [
        {
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
            "organization_id": org_id if isinstance(org_id, uuid.UUID) else uuid.UUID(str(org_id)),
            "plan": "enterprise",
            "overrides": {},
        }
        for org_id in organizations
    ]
    if rows:
        op.bulk_insert(plans, rows)


def downgrade() -> None:
    with op.batch_alter_table("organization_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organization_plans_organization_id"))
    op.drop_table("organization_plans")
