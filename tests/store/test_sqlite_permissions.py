"""The SQLite store holds upstream keys: its file and its -wal/-shm are readable by the owner only."""
import asyncio
import os
import stat

import pytest

from reapi.store.db import create_engine, migrate, private_sqlite_file
from tests.harness import Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)  # the usual default: new files 0644, world-readable
    yield
    os.umask(old)


async def test_new_store_and_its_wal_files_are_0600(tmp_path, upstream, loose_umask):
    db = tmp_path / "new.db"
    await asyncio.to_thread(migrate, f"sqlite:///{db}")  # as `reapi serve` does, before the app opens the store
    assert mode(db) == 0o600
    gw = await Gateway(gateway_settings(f"sqlite:///{db}")).start()
    try:
        s = await gw.setup(upstream)  # writes a channel with its upstream key
        await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{db}{suffix}") == 0o600, (suffix, oct(mode(f"{db}{suffix}")))
    finally:
        await gw.stop()
    with open(db, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"
        f.seek(16)
        assert int.from_bytes(f.read(2), "big") == 1024  # still made with 1 KiB pages


async def test_engine_alone_creates_the_file_0600(tmp_path, loose_umask):
    db = tmp_path / "sub" / "engine.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    finally:
        await engine.dispose()
    assert mode(db) == 0o600


def test_an_existing_world_readable_store_is_tightened(tmp_path, loose_umask):
    db = tmp_path / "old.db"
    migrate(f"sqlite:///{db}")
    os.chmod(db, 0o644)
    migrate(f"sqlite:///{db}")  # an upgrade of a store made before the fix
    assert mode(db) == 0o600
    for suffix in ("-wal", "-shm"):  # left by a process that died; SQLite reuses them as they are
        open(f"{db}{suffix}", "ab").close()
        os.chmod(f"{db}{suffix}", 0o644)
    private_sqlite_file(str(db))
    for suffix in ("", "-wal", "-shm"):
        assert mode(f"{db}{suffix}") == 0o600, suffix
