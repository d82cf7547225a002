"""overview: ledger_checks (the last on-demand ledger check) and ix_usage_created

The operator console keeps the result of its last `ledger verify` in a one-row table, so every
instance shows it and when it ran. The overview's per-model and per-channel aggregates read every
account's calls of the last 24 h / 7 days: an index on usage.created_at bounds them to that range
(ix_usage_account_created leads with the account).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ledger_checks',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('ran_at', sa.BigInteger(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('timed_out', sa.Boolean(), nullable=False),
        sa.Column('problem_count', sa.Integer(), nullable=False),
        sa.Column('problems', sa.Text(), nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.create_index('ix_usage_created', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_created')
    op.drop_table('ledger_checks')
