"""fair share: workers registry and per-company weight/cap

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.store.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('workers',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('started_at', shared.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen', shared.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_workers'))
    )
    op.create_index('ix_workers_queue_seen', 'workers', ['queue', 'last_seen'], unique=False)
    op.create_table('companies',
    sa.Column('company_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('max_running', sa.Integer(), nullable=True),
    sa.Column('updated_at', shared.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', name=op.f('pk_companies'))
    )


def downgrade() -> None:
    op.drop_table('companies')
    op.drop_index('ix_workers_queue_seen', table_name='workers')
    op.drop_table('workers')
