"""The tables. Amounts are BIGINT nano-USD, rates BIGINT micro-USD per 1M tokens,
times BIGINT milliseconds since the epoch (portable across SQLite and PostgreSQL)."""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table,
                        Text, false, text)

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

WALLETS = ("chat", "tasks")  # every account has one of each (migration 0004, queries.create_account)

# An account's balances, one per workspace: "chat" (spent through /v1) and "tasks" (the task
# gateway's). Available balance: credits minus settled charges minus open holds. Never < 0.
wallets = Table(
    "wallets", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("wallet", String(16), primary_key=True),
    Column("balance_nano", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("key_prefix", String(16), nullable=False),  # "sk-abcd" for humans, never enough to use
    Column("groups", Text, nullable=True),  # JSON list; NULL = any group
    Column("models", Text, nullable=True),  # JSON list; NULL = any model
    Column("spend_limit_nano", BigInteger, nullable=True),
    Column("spent_nano", BigInteger, nullable=False, default=0),  # settled charges + open holds
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # The wallet the key spends: "chat" keys serve /v1, "tasks" keys only the task gateway.
    Column("workspace", String(16), nullable=False, server_default="chat"),
    # After this moment (ms) the key opens nothing (401 invalid_api_key); NULL: never expires (0005).
    Column("expires_at", BigInteger, nullable=True),
    Column("key_last4", String(8), nullable=True),  # the secret's last 4 characters, for humans (0005)
    # tasks keys: the webhook of a task whose submit body has no webhook_url; NULL: none (0012).
    Column("webhook_url", Text, nullable=True),
)

channels = Table(
    "channels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("base_url", Text, nullable=False),
    Column("api_key", Text, nullable=False),
    Column("models", Text, nullable=False),  # JSON list of public model names
    Column("groups", Text, nullable=False),  # JSON list
    Column("model_map", Text, nullable=False),  # JSON object public -> upstream
    Column("priority", Integer, nullable=False, default=0),
    Column("weight", Integer, nullable=False, default=1),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

models = Table(
    "models", metadata,
    Column("name", String(200), primary_key=True),
    Column("input_micro", BigInteger, nullable=False),
    Column("output_micro", BigInteger, nullable=False),
    Column("cached_input_micro", BigInteger, nullable=True),
    Column("cache_write_micro", BigInteger, nullable=True),
    Column("context_window", Integer, nullable=False),
    Column("max_output_tokens", Integer, nullable=False),
    Column("lc_threshold_tokens", Integer, nullable=True),
    Column("lc_input_milli", Integer, nullable=True),
    Column("lc_output_milli", Integer, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("aliases", Text, nullable=True),  # JSON list of extra names (NULL: none); unique across models
    Column("created_at", BigInteger, nullable=False, server_default="0"),  # first priced (ms)
    # the public catalog's data (reapi.site), operator-edited: none of it is read on the hot path
    Column("description", Text, nullable=True),
    Column("category", String(20), nullable=False, server_default="chat"),
    Column("tags", Text, nullable=True),  # JSON list of short labels (NULL: none)
    Column("hidden", Boolean, nullable=False, server_default=false()),  # left out of the public catalog
)

groups = Table(
    "groups", metadata,
    Column("name", String(200), primary_key=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("total_rpm", Integer, nullable=True),
    Column("total_tpm", Integer, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

# One row per chat request; written as 'pending' with its hold before the upstream
# call, then settled ('ok'), released ('failed') or swept ('expired').
usage = Table(
    "usage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("account_id", Integer, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("group", String(200), nullable=False),
    Column("channel_id", Integer, nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cache_write_tokens", Integer, nullable=False, default=0),
    Column("hold_nano", BigInteger, nullable=False),
    Column("cost_nano", BigInteger, nullable=False, default=0),
    # What the upstream's usage said the call cost beyond what the balance could still pay.
    Column("uncollected_nano", BigInteger, nullable=False, default=0),
    Column("error_code", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("settled_at", BigInteger, nullable=True),
    # The serving process that took the hold (instances.id); NULL for rows written before
    # migration 0003. A pending hold whose instance's lease ran out is abandoned.
    Column("instance_id", String(32), nullable=True),
    Index("ix_usage_account_created", "account_id", "created_at"),
    # The operator overview reads every account's calls of the last 24 h / 7 days (migration 0013).
    Index("ix_usage_created", "created_at"),
    # The sweeper's only query reads pending rows, and only those: this partial index holds
    # just the calls in flight (migration 0002).
    Index("ix_usage_pending", "created_at", sqlite_where=text("status = 'pending'"),
          postgresql_where=text("status = 'pending'")),
)

# One row per serving process: its lease, renewed every lease/3 seconds (migration 0003).
# Times are the store's clock on PostgreSQL, so instances on different machines agree.
instances = Table(
    "instances", metadata,
    Column("id", String(32), primary_key=True),  # random per process
    Column("started_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# A hold of the generic operations (TaskHold, Capture, ReleaseHold): one row per ref, closed
# exactly once. Chat holds keep their usage row as the hold record instead.
holds = Table(
    "holds", metadata,
    Column("ref", String(64), primary_key=True),  # e.g. "task_..."
    Column("account_id", Integer, nullable=False),
    Column("wallet", String(16), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),  # held
    Column("captured_nano", BigInteger, nullable=False, default=0),  # charged when captured
    Column("status", String(16), nullable=False),  # pending | captured | released
    Column("created_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
)

# Stored Responses API answers (migration 0007): which channel made a response id, for whom. The key is
# (account_id, id): an id only ever resolves for the account whose call made it. request_id is the call's
# usage row; for a background response its hold stays open until its terminal status is seen.
responses = Table(
    "responses", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("id", String(128), primary_key=True),  # the upstream's response id, [A-Za-z0-9_-]{1,128}
    Column("channel_id", Integer, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("model", String(200), nullable=False),  # the public model name the call was billed as
    Column("request_id", String(64), nullable=False),
    Column("background", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),  # the gateway's count, billed if no usage is reported
    Column("created_at", BigInteger, nullable=False),
)

# Append-only: every change of a wallet's balance is one row here.
ledger = Table(
    "ledger", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # credit | hold | release | charge | adjustment
    Column("amount_nano", BigInteger, nullable=False),  # signed
    # What the entry is for (the ref): a chat call's request id, a generic hold's ref ("task_..."),
    # or a top-up's code/session id; NULL for a plain credit. The name predates wallets.
    Column("request_id", String(64), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("wallet", String(16), nullable=False, server_default="chat"),
    Index("ix_ledger_account", "account_id", "id"),
)

# --- webhooks (reapi.webhooks; migration 0009) ----------------------------------------------

# Each account's webhook signing secret ("whsec_" + base64 of 24 random bytes), stored as is:
# it must be shown to its owner and HMAC needs the key itself, so it cannot be hashed (like the
# channels' upstream keys, it is protected by the store's access rules). After a rotation the
# previous secret also signs, until previous_until, so deliveries in flight still verify.
webhook_secrets = Table(
    "webhook_secrets", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("secret", String(64), nullable=False),
    Column("previous_secret", String(64), nullable=True),
    Column("previous_until", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("rotated_at", BigInteger, nullable=True),
)

# The outbox: one row per webhook message (its id is the webhook-id header, the same on every
# attempt), written in the transaction of the task's terminal transition; a Deliverer claims
# due rows (lease_until) and records each try in webhook_attempts.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(32), primary_key=True),  # msg_...
    Column("account_id", Integer, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body sent
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", BigInteger, nullable=False),  # when the next attempt is due (ms)
    Column("lease_until", BigInteger, nullable=True),  # claimed by a deliverer until then
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_task", "task_id"),
    Index("ix_webhook_deliveries_due", "next_at", sqlite_where=text("status = 'pending'"),
          postgresql_where=text("status = 'pending'")),
)

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(32), nullable=False),
    Column("n", Integer, nullable=False),  # 1, 2, ...
    Column("at", BigInteger, nullable=False),  # ms
    Column("status_code", Integer, nullable=True),  # the receiver's HTTP status, if it answered
    Column("duration_ms", Integer, nullable=False),
    Column("error", String(32), nullable=True),  # error class; NULL when delivered
    Index("ix_webhook_attempts_delivery", "delivery_id", "n"),
)


# Single-row counters; 'config_version' is bumped by every admin change so other
# instances reload their in-memory catalog.
meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# The last on-demand ledger check of the operator console (migration 0013): one row (id 1), replaced by
# every check, so each instance shows the same status and when it ran.
ledger_checks = Table(
    "ledger_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("ran_at", BigInteger, nullable=False),  # ms, when the check ended
    Column("ok", Boolean, nullable=False),
    Column("timed_out", Boolean, nullable=False),
    Column("problem_count", Integer, nullable=False),
    Column("problems", Text, nullable=False),  # JSON list of the first problems (at most 50)
    Column("duration_ms", Integer, nullable=False),
    Column("user_id", Integer, nullable=True),  # the operator who ran it
)

# Redemption codes (migration 0010): minted in batches by operators, each credits one wallet once,
# ever. Only the code's sha256 is stored; `last4` lets humans tell codes apart.
redemption_codes = Table(
    "redemption_codes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False, unique=True),  # sha256 hex of the canonical code
    Column("last4", String(4), nullable=False),
    Column("batch", String(32), nullable=False),  # the mint it came from
    Column("amount_nano", BigInteger, nullable=False),
    Column("wallet", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("redeemed_at", BigInteger, nullable=True),  # set once, by a conditional UPDATE
    Column("redeemed_by", Integer, nullable=True),  # the account credited
)

# Top-ups of a wallet, one row each: a Stripe Checkout Session (pending until its webhook credits
# it) or a redeemed code (paid at once). The ledger credit's ref is "topup_<id>".
topups = Table(
    "topups", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("wallet", String(16), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    Column("method", String(16), nullable=False),  # stripe | code
    Column("status", String(16), nullable=False),  # pending | paid | failed | mismatch
    Column("session_id", String(255), nullable=True, unique=True),  # Stripe's Checkout Session id
    Column("code_id", Integer, nullable=True, unique=True),  # redemption_codes.id
    Column("created_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger, nullable=True),
    Index("ix_topups_account", "account_id", "id"),
)

# The Stripe events that credited a top-up, written in the credit's transaction: a re-delivered
# event (same id) or a second event for the same session cannot credit again.
stripe_events = Table(
    "stripe_events", metadata,
    Column("event_id", String(255), primary_key=True),
    Column("session_id", String(255), nullable=False, unique=True),
    Column("topup_id", Integer, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# --- the console's people (migration 0005) ----------------------------------------------

# A person who signs in to the console; each user owns one account (its wallets and keys).
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("email", String(254), nullable=False, unique=True),  # lower-cased
    Column("password_hash", Text, nullable=False),  # argon2id (PHC string)
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("verified_at", BigInteger, nullable=True),  # NULL: waits for its e-mailed link (REAPI_SIGNUP=verify)
    Column("created_at", BigInteger, nullable=False),
    Column("password_changed_at", BigInteger, nullable=False),
    Index("ix_users_account", "account_id"),
)

# A signed-in browser: only the sha256 of the cookie's random token is stored, so a copy of
# the store opens no session. Ends at idle or absolute expiry, at sign-out, or when the
# password changes (every other session of the user).
sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),  # the forms' token of this session
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # absolute
    Index("ix_sessions_user", "user_id"),
)

# Single-use e-mailed links: password reset (1 h) and e-mail verification. Hashed like sessions.
user_tokens = Table(
    "user_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("purpose", String(16), nullable=False),  # reset | verify
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

# Failed sign-ins and sign-ups, for the throttles (every instance sees the same counts):
# kind "login_email" / "login_addr" / "signup_addr", subject the e-mail or client address.
auth_events = Table(
    "auth_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(254), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_auth_events_subject", "kind", "subject", "created_at"),
)


# --- the task gateway (migration 0006) ------------------------------------------------------

# An async task's life: queued (stored, cost held) -> submitting (claimed, the upstream call is being
# made: its outcome is unknown until upstream_id is stored) -> running (upstream id known, polled)
# -> completed | failed. The terminal transition and its ledger entries are one transaction,
# guarded by a compare-and-set on `status`. Clients see queued/submitting/running as "processing".
tasks = Table(
    "tasks", metadata,
    Column("id", String(40), primary_key=True),  # "task_" + 26 characters
    Column("account_id", Integer, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("group", String(200), nullable=False),  # the channel pool the worker picks from
    Column("model", String(200), nullable=False),
    Column("category", String(16), nullable=False),  # image | video | audio
    Column("status", String(16), nullable=False),
    Column("body", Text, nullable=False),  # the validated body as JSON (model and our own fields removed)
    Column("cost_nano", BigInteger, nullable=False),  # held at submit, captured on success
    Column("channel_id", Integer, nullable=True),
    Column("upstream_id", String(128), nullable=True),
    Column("progress", Integer, nullable=True),
    Column("outputs", Text, nullable=True),  # JSON: {"image_urls": [...]} etc., reapi's own URLs
    Column("error_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),  # polls (and submit tries) so far
    Column("lease_owner", String(32), nullable=True),  # the worker holding the task
    Column("lease_until", BigInteger, nullable=True),  # ms; after it, any worker may take the task over
    Column("next_at", BigInteger, nullable=False),  # ms: when the task is due for its next step
    Column("deadline_at", BigInteger, nullable=False),  # ms: created_at + the model's max_seconds
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=True),  # when the output files are deleted
    Index("ix_tasks_account_created", "account_id", "created_at"),
    # The worker's claim reads open tasks only: this partial index holds just those.
    Index("ix_tasks_open", "next_at", sqlite_where=text("status IN ('queued', 'submitting', 'running')"),
          postgresql_where=text("status IN ('queued', 'submitting', 'running')")),
)

# A task model: the price list and accepted parameters of one public task model.
task_models = Table(
    "task_models", metadata,
    Column("name", String(200), primary_key=True),
    Column("category", String(16), nullable=False),  # image | video | audio
    Column("endpoint", String(16), nullable=False),  # images | videos | audio (the submit route)
    Column("unit", String(16), nullable=False),  # image | second | generation | song | minute | request
    Column("quantity", Text, nullable=False),  # JSON list of integer field names multiplied together
    Column("skus", Text, nullable=False),  # JSON list of {"when": {...}, "credits_per_unit": "50"}
    Column("params", Text, nullable=False),  # JSON Schema (subset) of the accepted body fields
    Column("max_seconds", Integer, nullable=False),
    Column("description", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("tags", Text, nullable=True),  # JSON list (the public catalog's), NULL: none
    Column("hidden", Boolean, nullable=False, server_default=false()),  # left out of the public catalog
)

# Idempotency-Key of a submit: the same key with the same body within 24 h answers the same task.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),  # sha256 hex of the request body as sent
    Column("task_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
