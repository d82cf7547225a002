"""lean indexes on the money tables

Every request inserts a usage row and three ledger rows and updates the usage row
once; each index costs on all of them. The sweeper only looks for *pending* rows,
so a partial index on those replaces the (status, created_at) index, and nothing
looks ledger rows up by request (verify aggregates the whole table).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_status_created')
        batch_op.create_index('ix_usage_pending', ['created_at'], unique=False, sqlite_where=PENDING,
                              postgresql_where=PENDING)
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_request')


def downgrade() -> None:
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_request', ['request_id'], unique=False)
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_pending')
        batch_op.create_index('ix_usage_status_created', ['status', 'created_at'], unique=False)
