"""Engine creation and migrations for the two supported stores: SQLite and PostgreSQL."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import URL, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("reapi.store")


def async_url(url: str) -> str:
    """Accept plain URLs (sqlite:///reapi.db, postgresql://...) and pick our async drivers."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def is_sqlite(url: str) -> bool:
    return async_url(url).startswith("sqlite")


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        private_sqlite_file(sqlite_path(url))
        engine = create_async_engine(url, pool_size=4, max_overflow=4)
        _tune_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def sqlite_path(url: str | URL) -> str:
    """The file of a SQLite URL (sqlite:///reapi.db -> reapi.db)."""
    return str(url.database if isinstance(url, URL) else async_url(url).split(":///", 1)[-1])


def connect_readonly(path: str, check_same_thread: bool = True):
    """A read-only connection to the SQLite file at `path` (a WAL reader: it never waits for a
    writer). Run each statement to its end (fetchall): an open read snapshot pins the WAL."""
    import sqlite3

    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=check_same_thread)


def private_sqlite_file(path: str) -> None:
    """Make the SQLite file (it holds upstream keys) readable by its owner only: create it
    0600 before any connection can create it with the umask's mode, and tighten an existing
    file and its -wal/-shm. SQLite gives new -wal/-shm files the database file's mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for f in (p, Path(path + "-wal"), Path(path + "-shm"), Path(path + "-journal")):
        try:
            if f.stat().st_mode & 0o077:
                f.chmod(0o600)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("cannot restrict %s to its owner (not ours); it holds upstream keys", f)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Take transaction control from the sqlite3 module so BEGIN IMMEDIATE below is what runs:
        # a write transaction takes the write lock up front instead of failing to upgrade later.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        cur.execute("PRAGMA busy_timeout=30000")  # other processes (workers) wait, not fail
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the store to the newest schema. Synchronous: call it outside any event loop."""
    from alembic import command

    if is_sqlite(url):
        path = sqlite_path(url)
        if path and path != ":memory:":
            new = not Path(path).exists() or Path(path).stat().st_size == 0
            private_sqlite_file(path)
            if new:
                _create_sqlite(path)
    command.upgrade(alembic_config(url), "head")


def _create_sqlite(path: str) -> None:
    """A new database file with 1 KiB pages. Every request rewrites a dozen small rows'
    pages (accounts, usage, ledger and their indexes) in the WAL; at 4 KiB a page that
    was ~50 KB of WAL per request, and checkpointing it took CPU from the requests."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size=1024")
        conn.execute("PRAGMA journal_mode=WAL")  # fixes the page size: it is written with the first page
    finally:
        conn.close()
