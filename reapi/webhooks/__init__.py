"""Signed webhooks for task outcomes: signing, secrets, the outbox, targets, the Deliverer.

A floor under the tasks wing: imports the standard library, aiohttp, SQLAlchemy, reapi.store
and reapi.billing.ledger (its clock) only; it knows nothing of tasks but their id and payload.

- signing:   `sign`, `signature_header`, `new_secret` (Standard Webhooks v1, whsec_ secrets)
- secret:    `secret`, `rotate_secret`: each account's signing secret (webhook_secrets)
- outbox:    `enqueue` (sync Connection, in the caller's transaction), `enqueue_async`, `deliveries`
- target:    `check_target` (URL), `check_webhook_url` (a given URL, at submit and key creation),
             `check_target_dns` (its addresses), `PublicResolver`
- schedule:  the retry schedule (about 24 h)
- deliverer: `Deliverer`, run by the task worker
"""
from reapi.webhooks.deliverer import ERROR_CLASSES, Deliverer
from reapi.webhooks.outbox import deliveries, enqueue, enqueue_async
from reapi.webhooks.schedule import GIVE_UP_AFTER_S, RETRY_DELAYS_S, next_attempt_ms
from reapi.webhooks.secret import ROTATION_GRACE_S, rotate_secret, secret
from reapi.webhooks.signing import new_secret, secret_key, sign, signature_header
from reapi.webhooks.target import TargetRefused, check_target, check_target_dns, check_webhook_url

__all__ = ["Deliverer", "ERROR_CLASSES", "deliveries", "enqueue", "enqueue_async", "GIVE_UP_AFTER_S",
           "RETRY_DELAYS_S", "next_attempt_ms", "ROTATION_GRACE_S", "rotate_secret", "secret", "new_secret",
           "secret_key", "sign", "signature_header", "TargetRefused", "check_target", "check_target_dns",
           "check_webhook_url"]
