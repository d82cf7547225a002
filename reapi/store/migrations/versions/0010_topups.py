"""top-ups: redemption codes, top-ups (Stripe Checkout and codes), the Stripe events that credited them

Three new tables, nothing existing changes.

Revision ID: 0010
Revises: 0009 (0004 before the console's 0005 was merged in)
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('redemption_codes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('batch', sa.String(length=32), nullable=False),
    sa.Column('amount_nano', sa.BigInteger(), nullable=False),
    sa.Column('wallet', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.Column('redeemed_at', sa.BigInteger(), nullable=True),
    sa.Column('redeemed_by', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash')
    )
    op.create_table('topups',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('wallet', sa.String(length=16), nullable=False),
    sa.Column('amount_nano', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=True),
    sa.Column('code_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('completed_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_id'),
    sa.UniqueConstraint('session_id')
    )
    op.create_index('ix_topups_account', 'topups', ['account_id', 'id'], unique=False)
    op.create_table('stripe_events',
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=False),
    sa.Column('topup_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('event_id'),
    sa.UniqueConstraint('session_id'),
    sa.UniqueConstraint('topup_id')
    )


def downgrade() -> None:
    op.drop_table('stripe_events')
    op.drop_index('ix_topups_account', table_name='topups')
    op.drop_table('topups')
    op.drop_table('redemption_codes')
