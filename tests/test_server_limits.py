"""Connection limits over real sockets: header size, header time and body idle time, in the
harness's server and in `reapi serve` (both run reapi.app.LimitedHttpProtocol)."""
import asyncio
import os
import subprocess
import sys
import time

import pytest

from tests.harness import ADMIN_KEY, Gateway, free_port, gateway_settings

CHAT = '{"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}'


async def connect(url: str):
    host, port = url.rsplit("//", 1)[1].split(":")
    return await asyncio.open_connection(host, int(port))


async def until_closed(reader: asyncio.StreamReader, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; fails past limit_s."""
    t = time.monotonic()
    got = b""
    try:
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                got += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        pytest.fail(f"connection still open after {limit_s} s; got {got[:200]!r}")
    return got, time.monotonic() - t


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every_s)
    except (ConnectionResetError, BrokenPipeError):
        pass


async def request(url: str, raw: bytes) -> bytes:
    reader, writer = await connect(url)
    writer.write(raw)
    await writer.drain()
    got, _ = await until_closed(reader, 10)
    writer.close()
    return got


@pytest.fixture
async def gw(sqlite_url):
    g = await Gateway(gateway_settings(sqlite_url, header_timeout_s=2, body_timeout_s=2)).start()
    yield g
    await g.stop()


async def test_one_mib_of_headers_is_refused_at_once(gw):
    reader, writer = await connect(gw.url)
    t = time.monotonic()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        for i in range(1024):
            writer.write(b"x-pad-%d: %s\r\n" % (i, b"a" * 1000))
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    got, _ = await until_closed(reader, 3)
    assert time.monotonic() - t < 3
    assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:100]
    writer.close()
    # 70 KB of headers in one write (complete in one read) is refused too
    big = await request(gw.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 431 "), big[:100]
    # a request with 60 KB of headers (under the 64 KiB default) is served
    pad = b"".join(b"x-pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(60))
    ok = await request(gw.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + pad + b"connection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:100]


async def test_headers_sent_one_byte_per_second_are_dropped(gw):
    reader, writer = await connect(gw.url)
    sender = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"s" * 60, 0.5))
    got, took = await until_closed(reader, 6)
    sender.cancel()
    assert 1.5 < took < 4, took  # header_timeout_s=2, from the connection's opening
    assert got.startswith(b"HTTP/1.1 408 "), got[:100]
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(gw):
    reader, writer = await connect(gw.url)
    got, took = await until_closed(reader, 6)
    assert got == b"" and 1.5 < took < 4, (got, took)
    writer.close()


async def test_a_stalled_body_is_dropped_and_a_slow_one_is_not(gw, upstream):
    s = await gw.setup(upstream)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {s['key']}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(CHAT)}\r\n\r\n").encode()
    reader, writer = await connect(gw.url)
    writer.write(head + CHAT[:10].encode())  # then nothing more
    await writer.drain()
    got, took = await until_closed(reader, 6)
    assert 1.5 < took < 4 and b" 200 " not in got, (took, got[:200])
    writer.close()
    # a body that keeps coming (a byte every 0.2 s, 13 s in all) is never idle 2 s: it is served
    reader, writer = await connect(gw.url)
    writer.write(head.replace(b"host: x", b"host: x\r\nconnection: close"))
    await trickle(writer, CHAT.encode(), 0.2)
    got, _ = await until_closed(reader, 15)
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    writer.close()
    assert await gw.verify() == []


async def test_keep_alive_requests_are_unaffected(gw):
    reader, writer = await connect(gw.url)
    for _ in range(3):  # each request well inside the limits, with pauses between them
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert line.startswith(b"HTTP/1.1 200 ")
        length = int(line.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(1.5)  # below uvicorn's 5 s keep-alive; the header clock restarts per request
    writer.close()


def test_reapi_serve_applies_the_limits(tmp_path):
    port = free_port()
    env = {**os.environ, "REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "REAPI_ADMIN_KEY": ADMIN_KEY,
           "REAPI_HEADER_TIMEOUT_S": "1", "REAPI_MAX_HEADER_BYTES": "4096", "REAPI_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "reapi", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    async def check() -> None:
        for _ in range(300):
            try:
                if (await request(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")) \
                        .startswith(b"HTTP/1.1 200 "):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("reapi serve did not start")
        big = await request(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431 "), big[:100]
        reader, writer = await connect(url)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        got, took = await until_closed(reader, 5)
        assert got.startswith(b"HTTP/1.1 408 ") and took < 3, (got, took)
        writer.close()

    try:
        asyncio.run(check())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
