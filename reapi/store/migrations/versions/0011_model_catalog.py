"""the public catalog's data on models

models.description (free text), models.category (chat | image | video | audio | tools, default chat),
models.tags (a JSON list, NULL: none) and models.hidden (left out of the public site's catalog and
/pricing; the model still answers calls). Operator-edited through PUT /admin/models/{model} and
`reapi models set`; read by reapi.site only, never on the hot path. Plain ADD COLUMNs on both stores.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('models', sa.Column('description', sa.Text(), nullable=True))
    op.add_column('models', sa.Column('category', sa.String(20), server_default='chat', nullable=False))
    op.add_column('models', sa.Column('tags', sa.Text(), nullable=True))
    op.add_column('models', sa.Column('hidden', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('hidden')
        batch_op.drop_column('tags')
        batch_op.drop_column('category')
        batch_op.drop_column('description')
