import pytest

from tests.harness import (Gateway, create_pg_database, drop_pg_database, gateway_settings, start_upstream)


@pytest.fixture
async def upstream():
    up = await start_upstream()
    yield up
    await up.runner.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request, tmp_path):
    """Run the test once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/reapi.db"
    else:
        url = await create_pg_database()
        yield url
        await drop_pg_database(url)


@pytest.fixture
async def sqlite_url(tmp_path):
    yield f"sqlite:///{tmp_path}/reapi.db"


@pytest.fixture
async def gateway(sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url)).start()
    yield gw
    await gw.stop()
