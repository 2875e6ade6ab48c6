"""secrets: envelope-encrypted store (M7)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved slot in the chain; its owner fills it with the tables it adds."""


def downgrade() -> None:
    """Reserved slot in the chain."""
