"""model aliases and when a model was added

models.aliases: a JSON list of extra names the model answers to (NULL: none); models.created_at:
when the model was first priced (ms), shown by GET /v1/models as `created` / `created_at`. Rows
from before this revision get their updated_at as created_at (the best date the store has).
Both are plain ADD COLUMNs on both stores.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('models', sa.Column('aliases', sa.Text(), nullable=True))
    op.add_column('models', sa.Column('created_at', sa.BigInteger(), server_default='0', nullable=False))
    op.execute("UPDATE models SET created_at = updated_at")


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('created_at')
        batch_op.drop_column('aliases')
