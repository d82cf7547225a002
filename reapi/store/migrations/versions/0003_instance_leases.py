"""instance leases: holds remember which process took them

Each serving process keeps a lease row in `instances`; each hold records the process's id
in usage.instance_id, so the holds of a process that died are released as soon as its
lease runs out instead of after REAPI_MAX_REQUEST_SECONDS. Existing rows keep
instance_id NULL (only the age rule applies to them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instances',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # A plain ADD COLUMN (nullable, no default) on both stores: no table rebuild, rows untouched.
    op.add_column('usage', sa.Column('instance_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_column('instance_id')
    op.drop_table('instances')
