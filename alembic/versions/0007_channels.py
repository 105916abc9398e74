"""clients' messenger identities; messages found by the provider's id (call status callbacks)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('contact', 'company'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('channels', sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_provider_id'), ['provider_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_provider_id'))
    for table in ('company', 'contact'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('channels')
