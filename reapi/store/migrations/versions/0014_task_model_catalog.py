"""the public catalog's data on task models

task_models.tags (a JSON list, NULL: none) and task_models.hidden (left out of the public site's
catalog, /pricing, /docs and /llms.txt; the model still takes tasks), as models has since 0011.
Operator-edited through PUT /admin/task-models/{model} and the operator console; read by reapi.site
only. Plain ADD COLUMNs on both stores.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('task_models', sa.Column('tags', sa.Text(), nullable=True))
    op.add_column('task_models', sa.Column('hidden', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('task_models', schema=None) as batch_op:
        batch_op.drop_column('hidden')
        batch_op.drop_column('tags')
