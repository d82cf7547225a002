"""Every setting reapi reads, in one place, from REAPI_* environment variables.

Nothing else in the package reads the environment; code gets a Settings value.
Every value is checked when a Settings is made (from the environment or directly):
a bad one stops start-up with a SettingsError naming the variable and its allowed range.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
SIGNUP_MODES = ("open", "verify", "closed")
HOLD_COMMITS = ("async", "sync")


class SettingsError(SystemExit):
    """A setting out of range. A SystemExit, so an uncaught one ends the process with
    status 1 and prints only its message (no traceback)."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Setting:
    """One REAPI_* variable: the Settings field it fills, its default, and for integers its range.
    README's configuration table documents exactly these (tests/test_docs.py checks it)."""
    field: str
    env: str
    default: object
    help: str
    lo: int | None = None  # integers: least allowed
    hi: int | None = None  # integers: greatest allowed


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "REAPI_DATABASE_URL", "sqlite:///reapi.db",
            "the store: a SQLite file, or postgresql://user@host:5432/db"),
    Setting("redis_url", "REAPI_REDIS_URL", None, "Redis for shared rate limits and channel health"),
    Setting("admin_key", "REAPI_ADMIN_KEY", None, "bearer token for /admin; unset disables the admin API"),
    Setting("max_body_bytes", "REAPI_MAX_BODY_BYTES", 32 * 1024 * 1024,
            "largest request body (413 beyond); 32 MiB admits a 1M-token context", 1024, 2**30),
    Setting("max_header_bytes", "REAPI_MAX_HEADER_BYTES", 64 * 1024,
            "request line plus headers (431 beyond)", 1024, 16 * 1024 * 1024),
    Setting("header_timeout_s", "REAPI_HEADER_TIMEOUT_S", 10, "seconds to complete a request's headers", 1, 3600),
    Setting("body_timeout_s", "REAPI_BODY_TIMEOUT_S", 60, "seconds a request body may idle", 1, 3600),
    Setting("upstream_connect_timeout", "REAPI_UPSTREAM_CONNECT_TIMEOUT", 10, "seconds to connect upstream", 1, 600),
    Setting("upstream_read_timeout", "REAPI_UPSTREAM_READ_TIMEOUT", 600,
            "seconds to wait for the next upstream byte", 1, 86400),
    Setting("max_request_seconds", "REAPI_MAX_REQUEST_SECONDS", 3600,
            "the longest a call may run, stream included", 1, 7 * 86400),
    Setting("lease_seconds", "REAPI_LEASE_SECONDS", 15,
            "each serving process's lease; a dead process's holds are released after it", 2, 3600),
    Setting("pg_hold_commit", "REAPI_PG_HOLD_COMMIT", "async",
            "PostgreSQL: a batch of chat holds commits without (async) or with (sync) waiting for its WAL flush"),
    Setting("config_poll_ms", "REAPI_CONFIG_POLL_MS", 1000, "how often admin changes are polled", 10, 600_000),
    Setting("min_output_tokens", "REAPI_MIN_OUTPUT_TOKENS", 16,
            "the least output a call must be able to pay for", 1, 1_000_000),
    Setting("channel_failures", "REAPI_CHANNEL_FAILURES", 3, "failures that start a channel's cool-down", 1, 1000),
    Setting("channel_cooldown_s", "REAPI_CHANNEL_COOLDOWN_S", 30, "first cool-down in seconds", 1, 3600),
    Setting("log_level", "REAPI_LOG_LEVEL", "info", "log level: " + ", ".join(LOG_LEVELS)),
    Setting("stripe_secret_key", "REAPI_STRIPE_SECRET_KEY", None,
            "Stripe API key (sk_... or rk_...); with the webhook secret it enables Stripe top-ups"),
    Setting("stripe_webhook_secret", "REAPI_STRIPE_WEBHOOK_SECRET", None,
            "the signing secret (whsec_...) of the /webhooks/stripe endpoint"),
    Setting("stripe_api_base", "REAPI_STRIPE_API_BASE", "https://api.stripe.com",
            "Stripe's API origin (a proxy, or a fake in tests)"),
    Setting("topup_min_usd", "REAPI_TOPUP_MIN_USD", 5, "smallest Stripe top-up in USD", 1, 1_000_000),
    Setting("topup_max_usd", "REAPI_TOPUP_MAX_USD", 1000, "largest Stripe top-up in USD", 1, 1_000_000),
    # the web console (reapi.web, reapi.console)
    Setting("public_url", "REAPI_PUBLIC_URL", None,
            "this deployment's public base URL (https://...) for links, snippets, task output URLs and the Secure cookie; "
            "unset: the request's own origin"),
    Setting("signup", "REAPI_SIGNUP", "open", "console sign-up: " + ", ".join(SIGNUP_MODES)),
    Setting("signup_credit_usd", "REAPI_SIGNUP_CREDIT_USD", "0", "a new user's first chat credit in USD"),
    Setting("signups_per_hour", "REAPI_SIGNUPS_PER_HOUR", 5, "sign-ups per client address per hour", 1, 1_000_000),
    Setting("session_idle_s", "REAPI_SESSION_IDLE_S", 2 * 86400,
            "a console session ends after this many seconds unused", 60, 365 * 86400),
    Setting("session_max_s", "REAPI_SESSION_MAX_S", 30 * 86400,
            "a console session ends this many seconds after sign-in", 60, 365 * 86400),
    Setting("smtp_url", "REAPI_SMTP_URL", None,
            "smtp://[user:password@]host:port (smtps:// for TLS) for password-reset and verification mail; "
            "unset: no mail"),
    Setting("smtp_from", "REAPI_SMTP_FROM", "reapi@localhost", "the From address of the console's mail"),
    # the task gateway (reapi.tasks)
    Setting("task_worker", "REAPI_TASK_WORKER", "on", "on: `reapi serve` runs the task worker too; off: only "
            "`reapi worker` does"),
    Setting("task_lease_seconds", "REAPI_TASK_LEASE_SECONDS", 30,
            "a worker's lease on a task; a dead worker's tasks are taken over after it", 2, 3600),
    Setting("task_poll_ms", "REAPI_TASK_POLL_MS", 1000,
            "first wait before polling an upstream task; grows 1.5x per poll up to 10x", 10, 600_000),
    Setting("task_concurrency", "REAPI_TASK_CONCURRENCY", 64, "tasks one worker process works on at once", 1, 10_000),
    # task output files and webhooks (reapi.media, reapi.webhooks)
    Setting("media_dir", "REAPI_MEDIA_DIR", None,
            "directory of task output files; default: media/ beside the SQLite file, else ./media"),
    Setting("media_s3_url", "REAPI_MEDIA_S3_URL", None,
            "store task outputs in a bucket instead: s3://BUCKET/PREFIX?endpoint=URL&region=R"),
    Setting("media_max_bytes", "REAPI_MEDIA_MAX_BYTES", 256 * 1024 * 1024,
            "largest task output file copied in", 1024, 2**34),
    Setting("media_fetch_timeout_s", "REAPI_MEDIA_FETCH_TIMEOUT_S", 120,
            "seconds to download one task output (and for one S3 call)", 1, 3600),
    Setting("media_retention_hours", "REAPI_MEDIA_RETENTION_HOURS", 168,
            "hours task output files are kept after the task ends", 1, 87600),
    Setting("webhook_allow_private", "REAPI_WEBHOOK_ALLOW_PRIVATE", "0",
            "1: webhooks may target private, loopback and link-local addresses"),
    Setting("webhook_timeout_s", "REAPI_WEBHOOK_TIMEOUT_S", 10, "seconds one webhook delivery may take", 1, 60),
)

# integer field -> (environment variable, least allowed, greatest allowed)
LIMITS: dict[str, tuple[str, int, int]] = {x.field: (x.env, x.lo, x.hi) for x in SETTINGS if x.lo is not None}


@dataclass(frozen=True)
class Settings:
    # Store: a SQLite file by default; postgresql://user@host/db for PostgreSQL.
    database_url: str = "sqlite:///reapi.db"
    # Redis for shared rate limits and channel health across instances; None: in-process.
    redis_url: str | None = None
    # Bearer token for /admin; None disables the admin API (every call answers 401).
    admin_key: str | None = None
    # Largest accepted request body. 32 MiB admits a 1M-token context (about 4 MB of
    # English text) with room for JSON escaping and inline images.
    max_body_bytes: int = 32 * 1024 * 1024
    # Request line plus headers: larger gets 431 and the connection is closed.
    max_header_bytes: int = 64 * 1024
    # Seconds from a connection's opening (or a request's first byte) to its complete headers.
    header_timeout_s: int = 10
    # Seconds a request body may go without a byte arriving (idle time between chunks).
    body_timeout_s: int = 60
    # Upstream timeouts (seconds): to connect, and to wait for the next byte of an answer.
    upstream_connect_timeout: int = 10
    upstream_read_timeout: int = 600
    # Holds older than this are considered abandoned (the process died mid-request) and
    # released by the sweeper. Must exceed the longest legitimate request.
    max_request_seconds: int = 3600
    # Each serving process holds a lease in the store, renewed every lease/3 seconds. The holds
    # of a process whose lease ran out (it died) are released by the other instances' sweepers.
    lease_seconds: int = 15
    # PostgreSQL: "async" commits batches of chat holds without waiting for the WAL flush (a crash of
    # PostgreSQL may lose in-flight holds: those calls go free); "sync" waits, as settlements always do.
    pg_hold_commit: str = "async"
    # How often each instance polls the store for admin changes (milliseconds).
    config_poll_ms: int = 1000
    # Smallest output a call must be able to pay for, beyond its prompt, to be admitted.
    min_output_tokens: int = 16
    # Channel health: this many consecutive failures start a cool-down of this many seconds.
    channel_failures: int = 3
    channel_cooldown_s: int = 30
    log_level: str = "info"
    # Stripe Checkout top-ups: on when both the API key and the webhook signing secret are set.
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # The range of a Stripe top-up (whole USD; amounts in between may have cents). A maximum below
    # the minimum is raised to it (payments.stripe.amount_range).
    topup_min_usd: int = 5
    topup_max_usd: int = 1000
    # The web console. public_url: links, snippets and the Secure cookie flag (https);
    # None: the request's own origin.
    public_url: str | None = None
    signup: str = "open"  # open | verify (the e-mailed link activates the user) | closed
    signup_credit_usd: str = "0"  # a new user's first credit into the chat wallet
    signups_per_hour: int = 5  # per client address
    session_idle_s: int = 2 * 86400
    session_max_s: int = 30 * 86400
    smtp_url: str | None = None  # smtp://host:port; None: no password-reset or verification mail
    smtp_from: str = "reapi@localhost"
    # The task gateway's worker: inside `reapi serve` ("on") or only as `reapi worker` ("off"); its lease
    # on a task (a worker that died is taken over after it), its first poll wait (growing 1.5x
    # per poll up to 10x), and how many tasks one worker process works on at once.
    task_worker: str = "on"
    task_lease_seconds: int = 30
    task_poll_ms: int = 1000
    task_concurrency: int = 64
    # Task output files: a local directory (None: media/ beside the SQLite file) or an S3 bucket.
    media_dir: str | None = None
    media_s3_url: str | None = None
    media_max_bytes: int = 256 * 1024 * 1024
    media_fetch_timeout_s: int = 120
    media_retention_hours: int = 168
    # Webhooks: True (REAPI_WEBHOOK_ALLOW_PRIVATE=1) lets targets resolve to private, loopback and
    # link-local addresses (tests, LANs).
    webhook_allow_private: bool = False
    webhook_timeout_s: int = 10

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for x in SETTINGS:
            if x.lo is not None:
                values[x.field] = _int(env, x.env, x.default)  # type: ignore[arg-type]
            else:
                values[x.field] = env.get(x.env) or x.default
        flag = str(values["webhook_allow_private"])
        if flag not in ("0", "1"):
            raise SettingsError(f"REAPI_WEBHOOK_ALLOW_PRIVATE must be 0 or 1, got {flag!r}")
        values["webhook_allow_private"] = flag == "1"
        values["log_level"] = str(values["log_level"]).lower()
        values["signup"] = str(values["signup"]).lower()
        values["pg_hold_commit"] = str(values["pg_hold_commit"]).lower()
        values["task_worker"] = str(values["task_worker"]).lower()
        return cls(**values)  # type: ignore[arg-type]


def validate(s: Settings) -> None:
    """Raise SettingsError for the first value out of its range."""
    known = {f.name for f in fields(s)}
    for name, (var, lo, hi) in LIMITS.items():
        if name not in known:
            continue
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SettingsError(f"{var} must be an integer between {lo} and {hi}, got {v!r}")
        if not lo <= v <= hi:
            raise SettingsError(f"{var} must be between {lo} and {hi}, got {v}")
    url = s.database_url
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://", "sqlite+aiosqlite:///",
                           "postgresql+asyncpg://")):
        raise SettingsError("REAPI_DATABASE_URL must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    if s.redis_url is not None and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REAPI_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    if not s.stripe_api_base.startswith(("https://", "http://")) or any(c <= " " for c in s.stripe_api_base):
        raise SettingsError("REAPI_STRIPE_API_BASE must be an http(s) URL such as https://api.stripe.com")
    if s.pg_hold_commit not in HOLD_COMMITS:
        raise SettingsError(f"REAPI_PG_HOLD_COMMIT must be one of {', '.join(HOLD_COMMITS)}, got {s.pg_hold_commit!r}")
    if s.signup not in SIGNUP_MODES:
        raise SettingsError(f"REAPI_SIGNUP must be one of {', '.join(SIGNUP_MODES)}, got {s.signup!r}")
    if s.public_url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(s.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
                or "@" in parts.netloc or any(c <= " " for c in s.public_url):
            raise SettingsError("REAPI_PUBLIC_URL must be an http:// or https:// URL with a host "
                                "(no user info, query or fragment)")
    if s.smtp_url is not None and not s.smtp_url.startswith(("smtp://", "smtps://")):
        raise SettingsError("REAPI_SMTP_URL must be an smtp:// or smtps:// URL")
    from decimal import Decimal, InvalidOperation

    try:
        credit = Decimal(s.signup_credit_usd)
        ok = credit.is_finite() and 0 <= credit <= 1_000_000 and credit == credit.quantize(Decimal("0.000000001"))
    except (InvalidOperation, TypeError):
        ok = False
    if not ok:
        raise SettingsError("REAPI_SIGNUP_CREDIT_USD must be a decimal USD amount between 0 and 1000000, "
                            f"got {s.signup_credit_usd!r}")
    if s.task_worker not in ("on", "off"):
        raise SettingsError(f"REAPI_TASK_WORKER must be on or off, got {s.task_worker!r}")
    if not isinstance(s.webhook_allow_private, bool):
        raise SettingsError(f"webhook_allow_private must be True or False, got {s.webhook_allow_private!r}")
    if s.media_s3_url is not None:
        from reapi.media.s3 import parse_s3_url

        try:
            parse_s3_url(s.media_s3_url)
        except ValueError as e:
            raise SettingsError(str(e)) from None
    if s.log_level.lower() not in LOG_LEVELS:
        raise SettingsError(f"REAPI_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}")
