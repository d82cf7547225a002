"""wallets: one balance per account and workspace; keys and ledger entries name theirs

accounts.balance_nano becomes the account's "chat" wallet, and every account gets a "tasks"
wallet at 0; existing keys are chat keys and existing ledger entries chat entries (both as
column defaults: a plain ADD COLUMN on both stores, no rewrite of the big ledger table).
The generic holds of the task gateway get their own table. accounts.balance_nano is dropped
(on SQLite by rebuilding the small accounts table): a process of the previous release still
running on this store fails its money batches instead of spending a balance nobody reads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wallets',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('wallet', sa.String(length=16), nullable=False),
    sa.Column('balance_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id', 'wallet')
    )
    op.execute("INSERT INTO wallets (account_id, wallet, balance_nano) SELECT id, 'chat', balance_nano FROM accounts")
    op.execute("INSERT INTO wallets (account_id, wallet, balance_nano) SELECT id, 'tasks', 0 FROM accounts")
    op.create_table('holds',
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('wallet', sa.String(length=16), nullable=False),
    sa.Column('amount_nano', sa.BigInteger(), nullable=False),
    sa.Column('captured_nano', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('closed_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('ref')
    )
    op.add_column('api_keys', sa.Column('workspace', sa.String(length=16), server_default='chat', nullable=False))
    op.add_column('ledger', sa.Column('wallet', sa.String(length=16), server_default='chat', nullable=False))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('balance_nano')


def downgrade() -> None:
    """Back to one balance: the chat wallet's. Refused while anything belongs to another
    workspace (money, entries, holds or keys: the old schema would make them chat's)."""
    bind = op.get_bind()
    for sql in ("SELECT count(*) FROM ledger WHERE wallet <> 'chat'", "SELECT count(*) FROM holds",
                "SELECT count(*) FROM api_keys WHERE workspace <> 'chat'",
                "SELECT count(*) FROM wallets WHERE wallet <> 'chat' AND balance_nano <> 0"):
        if bind.execute(sa.text(sql)).scalar():
            raise RuntimeError(f"cannot downgrade below 0004: not everything is chat's ({sql})")
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('balance_nano', sa.BigInteger(), server_default='0', nullable=False))
    op.execute("UPDATE accounts SET balance_nano = coalesce((SELECT w.balance_nano FROM wallets w "
               "WHERE w.account_id = accounts.id AND w.wallet = 'chat'), 0)")
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_column('wallet')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('workspace')
    op.drop_table('holds')
    op.drop_table('wallets')
