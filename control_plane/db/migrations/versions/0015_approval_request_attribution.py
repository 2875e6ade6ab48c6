"""approval requests: attributed requester, gateway, body hash, bundle revision, grant use

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Requests opened before these columns have no gateway: no grant is issued for them.
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(sa.Column("requester_user_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("gateway_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("bundle_revision", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("grant_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_column("grant_used_at")
        batch.drop_column("bundle_revision")
        batch.drop_column("body_hash")
        batch.drop_column("gateway_id")
        batch.drop_column("requester_user_id")
