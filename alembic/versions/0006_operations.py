"""operations over many items: a bulk retry of failed rules and its targets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'operation',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'operationtarget',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('operation_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('entry_no', sa.Integer(), nullable=False),
        sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rule_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['item_id'], ['item.id'], ),
        sa.ForeignKeyConstraint(['operation_id'], ['operation.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('operation_id', 'workflow_id', 'rule'),
    )
    with op.batch_alter_table('operationtarget', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operationtarget_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_operationtarget_operation_id'), ['operation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('operationtarget', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operationtarget_operation_id'))
        batch_op.drop_index(batch_op.f('ix_operationtarget_item_id'))
    op.drop_table('operationtarget')
    op.drop_table('operation')
