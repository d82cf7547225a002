"""Every setting reapi reads, in one place, from REAPI_* environment variables.

Nothing else in the package reads the environment; code gets a Settings value.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


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
    # Upstream timeouts (seconds): to connect, and to wait for the next byte of an answer.
    upstream_connect_timeout: int = 10
    upstream_read_timeout: int = 600
    # Holds older than this are considered abandoned (the process died mid-request) and
    # released by the sweeper. Must exceed the longest legitimate request.
    max_request_seconds: int = 3600
    # How often each instance polls the store for admin changes (milliseconds).
    config_poll_ms: int = 1000
    # Smallest output a call must be able to pay for, beyond its prompt, to be admitted.
    min_output_tokens: int = 16
    # Channel health: this many consecutive failures start a cool-down of this many seconds.
    channel_failures: int = 3
    channel_cooldown_s: int = 30
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        d = cls()
        return cls(
            database_url=env.get("REAPI_DATABASE_URL") or d.database_url,
            redis_url=env.get("REAPI_REDIS_URL") or None,
            admin_key=env.get("REAPI_ADMIN_KEY") or None,
            max_body_bytes=_int(env, "REAPI_MAX_BODY_BYTES", d.max_body_bytes),
            upstream_connect_timeout=_int(env, "REAPI_UPSTREAM_CONNECT_TIMEOUT", d.upstream_connect_timeout),
            upstream_read_timeout=_int(env, "REAPI_UPSTREAM_READ_TIMEOUT", d.upstream_read_timeout),
            max_request_seconds=_int(env, "REAPI_MAX_REQUEST_SECONDS", d.max_request_seconds),
            config_poll_ms=_int(env, "REAPI_CONFIG_POLL_MS", d.config_poll_ms),
            min_output_tokens=_int(env, "REAPI_MIN_OUTPUT_TOKENS", d.min_output_tokens),
            channel_failures=_int(env, "REAPI_CHANNEL_FAILURES", d.channel_failures),
            channel_cooldown_s=_int(env, "REAPI_CHANNEL_COOLDOWN_S", d.channel_cooldown_s),
            log_level=env.get("REAPI_LOG_LEVEL") or d.log_level,
        )
