"""incremental views: per-input progress of materialized views

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.store.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expire', sa.String(length=64), nullable=True))
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_written_at', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
    op.create_table('view_progress',
    sa.Column('view_dataset_id', sa.BigInteger(), nullable=False),
    sa.Column('input_dataset_id', sa.BigInteger(), nullable=False),
    sa.Column('snapshot_id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', shared.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['view_dataset_id'], ['datasets.id'], name=op.f('fk_view_progress_view_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('view_dataset_id', 'input_dataset_id', name=op.f('pk_view_progress'))
    )


def downgrade() -> None:
    op.drop_table('view_progress')
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_column('file_written_at')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('expire')
