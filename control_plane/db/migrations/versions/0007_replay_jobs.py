"""impact replay jobs (M5)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replay_jobs",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=True),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=False),
        sa.Column("policies_hash", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_decisions", sa.Integer(), nullable=False),
        sa.Column("examples_per_transition", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("processed", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_replay_jobs_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"],
            ["policies.id"],
            name=op.f("fk_replay_jobs_policy_id_policies"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_jobs")),
    )
    with op.batch_alter_table("replay_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_replay_jobs_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_replay_jobs_policies_hash"), ["policies_hash"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_replay_jobs_status"), ["status"], unique=False)

    op.create_table(
        "policy_settings",
        sa.Column("require_replay_before_publish", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_policy_settings_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_settings")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_policy_settings_organization_id")),
    )
    with op.batch_alter_table("policy_settings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_policy_settings_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("policy_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_settings_organization_id"))
    op.drop_table("policy_settings")

    with op.batch_alter_table("replay_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replay_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_replay_jobs_policies_hash"))
        batch_op.drop_index(batch_op.f("ix_replay_jobs_organization_id"))
    op.drop_table("replay_jobs")
