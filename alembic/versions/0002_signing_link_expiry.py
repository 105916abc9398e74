"""signing links expire and can be revoked

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Signers whose links were made before this revision get an expiry 30 days after the upgrade (the rule's default
`link_expires_days`), so no link stays open for ever.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXISTING_LINK_DAYS = 30


def upgrade() -> None:
    with op.batch_alter_table('documentsigner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('link_revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    signers = sa.table('documentsigner', sa.column('link_expires_at', sqlmodel.sql.sqltypes.UTCDateTime()))
    expires = datetime.now(timezone.utc) + timedelta(days=EXISTING_LINK_DAYS)
    op.execute(signers.update().where(signers.c.link_expires_at.is_(None)).values(link_expires_at=expires))


def downgrade() -> None:
    with op.batch_alter_table('documentsigner', schema=None) as batch_op:
        batch_op.drop_column('link_revoked_at')
        batch_op.drop_column('link_expires_at')
