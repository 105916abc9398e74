"""a handed rule remembers when its moment's batch claimed it; a due moment whether it runs rules that reach the
outside

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('handedrule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('duemoment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outside', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('duemoment', schema=None) as batch_op:
        batch_op.drop_column('outside')
    with op.batch_alter_table('handedrule', schema=None) as batch_op:
        batch_op.drop_column('claimed_at')
