"""tasks: the async task gateway's tasks, task models (price lists and parameters), idempotency keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OPEN = "status IN ('queued', 'submitting', 'running')"


def upgrade() -> None:
    op.create_table('tasks',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('cost_nano', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=True),
    sa.Column('upstream_id', sa.String(length=128), nullable=True),
    sa.Column('progress', sa.Integer(), nullable=True),
    sa.Column('outputs', sa.Text(), nullable=True),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=32), nullable=True),
    sa.Column('lease_until', sa.BigInteger(), nullable=True),
    sa.Column('next_at', sa.BigInteger(), nullable=False),
    sa.Column('deadline_at', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('completed_at', sa.BigInteger(), nullable=True),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_tasks_account_created', 'tasks', ['account_id', 'created_at'])
    op.create_index('ix_tasks_open', 'tasks', ['next_at'], sqlite_where=sa.text(OPEN),
                    postgresql_where=sa.text(OPEN))
    op.create_table('task_models',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('endpoint', sa.String(length=16), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.Text(), nullable=False),
    sa.Column('skus', sa.Text(), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('max_seconds', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('idempotency_keys',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('task_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'key')
    )


def downgrade() -> None:
    """Refused while any task hold is open: its money would have no owner left to close it."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM tasks WHERE " + OPEN)).scalar():
        raise RuntimeError("cannot downgrade below 0006: tasks are still open")
    op.drop_table('idempotency_keys')
    op.drop_table('task_models')
    op.drop_index('ix_tasks_open', table_name='tasks')
    op.drop_index('ix_tasks_account_created', table_name='tasks')
    op.drop_table('tasks')
