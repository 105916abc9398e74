"""every automation save is kept as a version, and an item knows the version its stage entry runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

The automation saved at the upgrade becomes its pipeline's first kept version (`saved_by` says it was saved
before versions were kept), and each item in a stage is taken to run that version.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "saved before versions were kept"


def upgrade() -> None:
    op.create_table(
        'automationversion',
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('saved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('saved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('in_flight', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('apply_workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(['pipeline_id'], ['pipeline.id'], ),
        sa.PrimaryKeyConstraint('pipeline_id', 'version'),
    )
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry_version', sa.Integer(), nullable=True))

    automation = sa.table(
        'automation', sa.column('pipeline_id', sa.Integer()), sa.column('version', sa.Integer()),
        sa.column('config', sa.JSON()), sa.column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    versions = sa.table(
        'automationversion', sa.column('pipeline_id', sa.Integer()), sa.column('version', sa.Integer()),
        sa.column('config', sa.JSON()), sa.column('saved_at', sqlmodel.sql.sqltypes.UTCDateTime()),
        sa.column('saved_by', sa.String()), sa.column('note', sa.String()), sa.column('in_flight', sa.String()),
    )
    op.execute(versions.insert().from_select(
        ['pipeline_id', 'version', 'config', 'saved_at', 'saved_by', 'note', 'in_flight'],
        sa.select(automation.c.pipeline_id, automation.c.version, automation.c.config, automation.c.updated_at,
                  sa.literal(BEFORE), sa.literal(""), sa.literal("keep")),
    ))
    item = sa.table('item', sa.column('pipeline_id', sa.Integer()), sa.column('stage', sa.String()),
                    sa.column('entry_version', sa.Integer()))
    current = sa.select(automation.c.version).where(automation.c.pipeline_id == item.c.pipeline_id).scalar_subquery()
    op.execute(item.update().where(item.c.stage.is_not(None)).values(entry_version=current))


def downgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_column('entry_version')
    op.drop_table('automationversion')
