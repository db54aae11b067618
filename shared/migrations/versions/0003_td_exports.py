"""td_jobs: the Treasure Data surface's view of a job (query, database, result expiry,
result export targets and links)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.store.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('td_jobs',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('td_type', sa.String(length=16), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('database', sa.String(length=255), nullable=False),
    sa.Column('interactive', sa.Boolean(), nullable=False),
    sa.Column('result_size', sa.BigInteger(), nullable=True),
    sa.Column('result_expired_at', shared.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result_url_encrypted', sa.Text(), nullable=True),
    sa.Column('result_url_redacted', sa.Text(), nullable=True),
    sa.Column('export_spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('linked_result_export_job_id', sa.Uuid(), nullable=True),
    sa.Column('result_export_target_job_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', shared.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_td_jobs_job_id_jobs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_td_jobs'))
    )
    op.create_index('ix_td_jobs_expiry', 'td_jobs', ['interactive', 'result_expired_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_td_jobs_expiry', table_name='td_jobs')
    op.drop_table('td_jobs')
