"""A background loop's look before its query: on SQLite, is there anything to do at all?

The task worker and the webhook deliverer poll the store every second or half second. Through
aiosqlite's thread each idle poll handed the GIL back and forth with the event loop on the same core
and stalled it 10-20 ms (bench/analysis.md: the 1 % of calls at one connection that took that long).
A Probe reads on the loop from its own read-only connection, which never waits for a writer (WAL),
in microseconds; the loop runs its real query only when the probe saw a row. On PostgreSQL, an
in-memory store or any error, it says nothing (`idle` is False) and the query runs as before.
Imports only reapi.store.db.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.store.db import connect_readonly, sqlite_path


class Probe:
    def __init__(self, engine: AsyncEngine, sql: str) -> None:
        """`sql`: a SELECT that returns a row when there is work (end it with LIMIT 1)."""
        self.sql = sql
        self.path = None
        if engine.dialect.name == "sqlite":
            path = sqlite_path(engine.url)
            self.path = path if path and path != ":memory:" else None
        self._conn: sqlite3.Connection | None = None

    def idle(self, params: dict[str, Any] | tuple = ()) -> bool:
        """True only when the store was read and holds no row for `sql`."""
        if self.path is None:
            return False
        try:
            if self._conn is None:
                self._conn = connect_readonly(self.path)
            return not self._conn.execute(self.sql, params).fetchall()  # to its end: no snapshot left open
        except sqlite3.Error:
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
