"""responses: stored Responses API answers, routed to the channel that made them

One row per response id a call created (unless the client sent store: false), keyed by
(account_id, id) so an id only resolves for its own account. A new, empty table: nothing to
convert.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('responses',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('background', sa.Boolean(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'id')
    )


def downgrade() -> None:
    op.drop_table('responses')
