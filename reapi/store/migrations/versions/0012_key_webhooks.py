"""key webhooks: api_keys.webhook_url, a tasks key's default webhook

A task submitted without a `webhook_url` in its body gets its key's default (NULL: none).
Nullable, no default: a plain ADD COLUMN on both stores, old rows keep working unchanged.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('api_keys', sa.Column('webhook_url', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('webhook_url')
