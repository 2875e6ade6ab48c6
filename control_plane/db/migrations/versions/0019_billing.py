"""billing (M12): the 90 % plan warning, Stripe accounts and events, downgrade grace

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
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
        "plan_warnings",
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email_attempts", sa.Integer(), nullable=False),
        sa.Column("email_next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        *_tenant_columns("plan_warnings"),
        sa.UniqueConstraint(
            "organization_id", "window", name=op.f("uq_plan_warnings_organization_id_window")
        ),
    )
    op.create_table(
        "billing_accounts",
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("subscription_status", sa.String(length=32), nullable=True),
        sa.Column("price_id", sa.String(length=255), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metered_window", sa.String(length=32), nullable=True),
        sa.Column("metered_reported", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant_columns("billing_accounts"),
        sa.UniqueConstraint("customer_id", name=op.f("uq_billing_accounts_customer_id")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_billing_accounts_organization_id")),
    )
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_stripe_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_stripe_events_event_id")),
    )
    for table in ("plan_warnings", "billing_accounts", "stripe_events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f(f"ix_{table}_organization_id"), ["organization_id"], unique=False
            )
    with op.batch_alter_table("organization_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("grace_limits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organization_plans", schema=None) as batch_op:
        batch_op.drop_column("grace_limits")
        batch_op.drop_column("grace_until")
    for table in ("stripe_events", "billing_accounts", "plan_warnings"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_organization_id"))
        op.drop_table(table)
