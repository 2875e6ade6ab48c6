"""per-organisation bundle signing keys

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-03 08:00:00.000000

A signing key with `organization_id` set signs only that organisation's bundles; the
platform keys (NULL) keep signing access tokens and approval grants. Existing deployments
get each organisation's key on its next publish (the key ring creates it). `endorsement`
is the previous key's signature over a new organisation key (see services/keys.py). No foreign key
to `organizations`: the key ring is global key material that no cascade may touch.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organization_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("endorsement", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_signing_keys_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    # Bundles signed by organisation keys would no longer verify against the platform JWKS;
    # drop those keys with the column (the next publish signs with the platform key again).
    op.execute("DELETE FROM signing_keys WHERE organization_id IS NOT NULL")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_organization_id"))
        batch_op.drop_column("endorsement")
        batch_op.drop_column("organization_id")
