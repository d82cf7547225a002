"""Money coming in: redemption codes (codes.py) and Stripe Checkout top-ups (stripe.py).

A floor: every rule of a top-up lives here (how a code looks and is stored, that it credits once,
ever; that a Stripe session credits once, however often its events are delivered, and only the
amount of our own top-up row). Each credit is a ledger `credit` written in the same transaction
as the record that makes it happen only once.

May import: billing, store, limits (a throttle's rule), errors, settings. Never a wing (api, admin,
console, webhooks) or proxy.
"""
