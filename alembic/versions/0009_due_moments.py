"""due moments: rules of many entries due at one moment, and what each entry handed over

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 08:00:03.661387
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('duemoment',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('arrivals', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('duemoment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duemoment_due'), ['due'], unique=False)

    op.create_table('handedrule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('moment', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('call', sa.LargeBinary(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('run_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('outcome', sa.LargeBinary(), nullable=True),
    sa.Column('told', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workflow_id', 'rule', 'seq')
    )
    with op.batch_alter_table('handedrule', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handedrule_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_handedrule_moment'), ['moment'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('handedrule', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handedrule_moment'))
        batch_op.drop_index(batch_op.f('ix_handedrule_item_id'))

    op.drop_table('handedrule')
    with op.batch_alter_table('duemoment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duemoment_due'))

    op.drop_table('duemoment')
