"""The operations layer: every change an operator makes, one async function each.

The admin API (reapi.admin), the `reapi` CLI, the demo seed, the console and the operator
console all call these functions; none of them writes the store or parses money on its own. Each takes an open
AsyncConnection (inside the caller's transaction) and plain typed arguments, and raises
GatewayError(400, param=...) for a bad value or GatewayError(404) for a missing account, key or
channel. Decimal-string money becomes integer nano/micro units here (operations.money), and the
rules for names, URLs and ranges are stated once (operations.inputs).

May import: billing, store, errors, settings, the adapter registry; task_models.py also
reapi.tasks.params (the schema check, imported when a task model is set: not at start-up), and
accounts.py reapi.webhooks.target (a tasks key's default webhook URL, imported when one is given). Never api/, admin/, proxy/ or cli.
"""
from reapi.operations.accounts import account, add_credit, create_account, create_key, debit, revoke_key
from reapi.operations.channels import create_channel, delete_channel, update_channel
from reapi.operations.groups import set_group
from reapi.operations.prices import model_view, price_row, price_view, set_price

__all__ = ["account", "add_credit", "create_account", "create_key", "debit", "revoke_key", "create_channel",
           "delete_channel", "update_channel", "set_group", "model_view", "price_row", "price_view",
           "set_price"]
