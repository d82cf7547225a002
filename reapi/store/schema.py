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

# Single-row counters; 'config_version' is bumped by every admin change so other
# instances reload their in-memory catalog.
meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
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
