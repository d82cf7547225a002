"""Task output files in a local directory: sniffing, saving (bytes and downloads over real
sockets, with every refusal), serving /media/... under uvicorn, retention."""
from __future__ import annotations

import asyncio
import os
import stat
import struct
import wave
import zlib
from dataclasses import dataclass
from io import BytesIO

import aiohttp
import pytest
from aiohttp import web

from reapi.media import (MediaError, delete_expired, expires_at_ms, media_app, media_dir, open_store,
                         save_outputs, sniff)
from reapi.media.local import LocalStore
from reapi.mock_upstream import media as files
from reapi.settings import Settings
from tests.media.servers import file_host, serve_asgi

MB = 1024 * 1024


@dataclass(frozen=True)
class Out:  # the shape of reapi.tasks.providers.base.Output
    url: str | None = None
    data: bytes | None = None
    content_type: str | None = None
    kind: str = "image"


# --- the demo upstream's files are valid, by their formats' own rules ----------------------

def test_png_chunks_and_pixels_are_valid():
    data = files.png(3, 2, (1, 2, 3))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, kinds = 8, b"", []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        kinds.append(kind)
        if kind == b"IHDR":
            assert struct.unpack(">IIBBBBB", body) == (3, 2, 8, 2, 0, 0, 0)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    assert zlib.decompress(idat) == (b"\x00" + b"\x01\x02\x03" * 3) * 2


def test_wav_reads_with_the_standard_library():
    with wave.open(BytesIO(files.wav(0.25, 8000))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 2000)


def test_mp3_is_a_chain_of_frames_and_mp4_a_chain_of_boxes():
    data = files.mp3(5)
    assert len(data) == 5 * 417 and all(data[i:i + 4] == b"\xff\xfb\x90\x64" for i in range(0, len(data), 417))
    data, boxes, pos = files.mp4(b"x" * 10), [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        boxes.append(data[pos + 4:pos + 8])
        pos += n
    assert pos == len(data) and boxes == [b"ftyp", b"free", b"mdat"]


@pytest.mark.parametrize("data, ext", [
    (files.png(), "png"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpg"), (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    (files.wav(), "wav"), (files.mp3(), "mp3"), (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
    (files.mp4(), "mp4"), (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00", "m4a"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
])
def test_sniff_knows_the_stored_types(data, ext):
    assert sniff(data).ext == ext


@pytest.mark.parametrize("data", [
    b"", b"<html><script>alert(1)</script>", b"GIF89a....", b"%PDF-1.7", b"PK\x03\x04zip",
    b"\x1a\x45\xdf\xa3\x9f\x42\x86matroska", b"RIFF\x00\x00\x00\x00AVI ", b"\xff\xfa\x00\x00",  # free bitrate
    b"\xff\xfb\xf0\x00",  # bad bitrate index
    b"\x89PNG", b"{\"data\": []}",
])
def test_sniff_refuses_everything_else(data):
    assert sniff(data) is None


# --- the local store -----------------------------------------------------------------------

async def test_local_store_put_get_delete_with_private_modes(tmp_path):
    store = LocalStore(tmp_path / "m")
    png, wav = files.png(), files.wav()
    await store.put("tasks/task_a/0.png", png, "image/png")
    await store.put("tasks/task_a/1.wav", wav, "audio/wav")
    await store.put("tasks/task_b/0.png", png, "image/png")
    assert await store.get("tasks/task_a/0.png") == (png, "image/png")
    assert await store.get("tasks/task_a/1.wav") == (wav, "audio/wav")
    assert await store.get("tasks/task_a/2.png") is None
    for d in (tmp_path / "m", tmp_path / "m/tasks", tmp_path / "m/tasks/task_a"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    f = tmp_path / "m/tasks/task_a/0.png"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert sorted(p.name for p in f.parent.iterdir()) == ["0.png", "1.wav"]  # no temporary file left
    await store.put("tasks/task_a/0.png", files.png(5, 5), "image/png")  # replaced whole
    assert (await store.get("tasks/task_a/0.png"))[0] == files.png(5, 5)
    assert await store.delete_prefix("tasks/task_a/") == 2
    assert await store.get("tasks/task_a/1.wav") is None and not (tmp_path / "m/tasks/task_a").exists()
    assert await store.get("tasks/task_b/0.png") == (png, "image/png")
    assert await store.delete_prefix("tasks/task_gone/") == 0


@pytest.mark.parametrize("key", ["../x/0.png", "tasks/../../etc/0.png", "tasks/a/0.exe", "tasks/a/b/0.png",
                                 "/tasks/a/0.png", "tasks/a/x.png", "tasks/a%2f..%2f/0.png", "tasks//0.png"])
async def test_local_store_refuses_other_names(tmp_path, key):
    store = LocalStore(tmp_path)
    with pytest.raises(ValueError):
        await store.put(key, files.png(), "image/png")
    with pytest.raises(ValueError):
        await store.get(key)


async def test_delete_prefix_refuses_anything_but_one_task(tmp_path):
    store = LocalStore(tmp_path)
    await store.put("tasks/t1/0.png", files.png(), "image/png")
    for prefix in ("", "tasks/", "tasks/../", "tasks/t1", "/"):
        with pytest.raises(ValueError):
            await store.delete_prefix(prefix)
    assert await store.get("tasks/t1/0.png") is not None


def test_open_store_and_the_default_directory(tmp_path):
    s = Settings(database_url=f"sqlite:///{tmp_path}/data/reapi.db")
    assert media_dir(s) == tmp_path / "data" / "media"
    assert open_store(s).root == (tmp_path / "data" / "media").resolve()
    assert media_dir(Settings(database_url="postgresql://u@h/db")) == media_dir(Settings(
        database_url="postgresql://u@h/db", media_dir=None))
    assert str(media_dir(Settings(database_url="postgresql://u@h/db"))) == "media"
    assert open_store(Settings(media_dir=str(tmp_path / "x"))).root == (tmp_path / "x").resolve()


# --- save_outputs ---------------------------------------------------------------------------

async def test_save_outputs_stores_bytes_and_downloads(tmp_path):
    store = LocalStore(tmp_path)
    png, mp4, mp3 = files.png(), files.mp4(), files.mp3()

    async def video(request):
        return web.Response(body=mp4, content_type="application/octet-stream")  # the declared type is ignored

    async def song(request):  # chunked, no content-length
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(mp3), 100):
            await resp.write(mp3[i:i + 100])
        await resp.write_eof()
        return resp

    async with file_host({"/v.mp4": video, "/s": song}) as (base, seen), aiohttp.ClientSession() as session:
        saved = await save_outputs(store, session, "task_X1", [
            Out(data=png, content_type="image/jpeg"), Out(url=base + "/v.mp4", kind="video"),
            Out(url=base + "/s", kind="audio"), Out(data=png, kind="last_frame")],
            public_base="https://gw.example/", max_bytes=MB)
    assert [(f.kind, f.url, f.content_type, f.size) for f in saved] == [
        ("image", "https://gw.example/media/tasks/task_X1/0.png", "image/png", len(png)),
        ("video", "https://gw.example/media/tasks/task_X1/1.mp4", "video/mp4", len(mp4)),
        ("audio", "https://gw.example/media/tasks/task_X1/2.mp3", "audio/mpeg", len(mp3)),
        ("last_frame", "https://gw.example/media/tasks/task_X1/3.png", "image/png", len(png))]
    assert await store.get("tasks/task_X1/1.mp4") == (mp4, "video/mp4")
    assert await store.get("tasks/task_X1/2.mp3") == (mp3, "audio/mpeg")
    assert seen == ["/v.mp4", "/s"]


async def _refused(tmp_path, routes, outputs, *, max_bytes=MB, timeout_s=5.0):
    store = LocalStore(tmp_path)
    async with file_host(routes) as (base, seen), aiohttp.ClientSession() as session:
        outs = [Out(url=o.url.replace("BASE", base) if isinstance(o.url, str) else o.url, data=o.data, kind=o.kind)
                for o in outputs]
        with pytest.raises(MediaError) as e:
            await save_outputs(store, session, "task_R", outs, public_base="http://gw", max_bytes=max_bytes,
                               timeout_s=timeout_s)
    assert "127.0.0.1" not in str(e.value) and "://" not in str(e.value)  # safe to show a client
    assert not (tmp_path / "tasks" / "task_R").exists()  # what was saved before the refusal is gone
    return str(e.value), seen


async def test_a_redirect_is_not_followed(tmp_path):
    async def moved(request):
        raise web.HTTPFound("/secret.png")

    async def secret(request):
        return web.Response(body=files.png())

    msg, seen = await _refused(tmp_path, {"/r": moved, "/secret.png": secret},
                               [Out(data=files.png()), Out(url="BASE/r")])
    assert "HTTP 302" in msg and seen == ["/r"]


async def test_too_large_is_refused_declared_or_streamed(tmp_path):
    big = files.png() + bytes(5000)

    async def declared(request):
        return web.Response(body=big)

    async def streamed(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(1000):  # ~1 MB, never all read
            await resp.write(big[:1024])
        return resp

    msg, _ = await _refused(tmp_path, {"/a": declared}, [Out(url="BASE/a")], max_bytes=4096)
    assert "larger than 4096" in msg
    msg, _ = await _refused(tmp_path, {"/b": streamed}, [Out(url="BASE/b")], max_bytes=4096)
    assert "larger than 4096" in msg
    msg, _ = await _refused(tmp_path, {}, [Out(data=big)], max_bytes=4096)
    assert "larger than 4096" in msg


async def test_a_slow_download_times_out(tmp_path):
    async def slow(request):
        await asyncio.sleep(3)
        return web.Response(body=files.png())

    t0 = asyncio.get_running_loop().time()
    msg, _ = await _refused(tmp_path, {"/slow": slow}, [Out(url="BASE/slow")], timeout_s=0.5)
    assert "longer than 0.5 s" in msg and asyncio.get_running_loop().time() - t0 < 2.5


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://BASE/x", "data:image/png;base64,AAAA", "BASE-no-host",
                                 "//BASE/x", "javascript:alert(1)", 42, "http://h:99999/x", "http://h/a b"])
async def test_only_http_urls_are_downloaded(tmp_path, url):
    if isinstance(url, str) and url.startswith("BASE"):
        url = "http:///x"
    msg, seen = await _refused(tmp_path, {}, [Out(url=url)])  # type: ignore[arg-type]
    assert "not a usable http(s) URL" in msg and seen == []


async def test_wrong_or_unknown_types_are_refused(tmp_path):
    async def html(request):
        return web.Response(text="<html><script>alert(1)</script></html>", content_type="image/png")

    async def missing(request):
        return web.Response(status=404)

    msg, _ = await _refused(tmp_path, {"/h": html}, [Out(url="BASE/h")])
    assert "not an image, audio or video file" in msg
    msg, _ = await _refused(tmp_path, {}, [Out(data=files.png(), kind="video")])
    assert msg == "an output meant as video is image (png)"
    msg, _ = await _refused(tmp_path, {}, [Out(data=files.mp3(), kind="last_frame")])
    assert "is audio" in msg
    msg, _ = await _refused(tmp_path, {"/m": missing}, [Out(url="BASE/m")])
    assert "HTTP 404" in msg
    msg, _ = await _refused(tmp_path, {}, [Out()])
    assert "neither a URL nor data" in msg
    msg, _ = await _refused(tmp_path, {}, [Out(data=files.png())] * 33)
    assert "at most 32" in msg


async def test_a_connection_refused_is_a_media_error(tmp_path):
    from tests.harness import free_port

    msg, _ = await _refused(tmp_path, {}, [Out(url=f"http://127.0.0.1:{free_port()}/x.png")])
    assert msg.startswith("an output download failed (")


# --- serving /media/... -----------------------------------------------------------------------

async def test_media_app_serves_files_with_their_type_and_nothing_else(tmp_path):
    store = LocalStore(tmp_path)
    png, wav = files.png(), files.wav()
    await store.put("tasks/task_S/0.png", png, "image/png")
    await store.put("tasks/task_S/1.wav", wav, "audio/wav")
    (tmp_path / "secret.txt").write_text("do not serve")
    async with serve_asgi(media_app(store)) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/media/tasks/task_S/0.png") as r:
            assert r.status == 200 and await r.read() == png
            assert r.headers["content-type"] == "image/png"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in r.headers["content-security-policy"]
        async with s.get(base + "/media/tasks/task_S/1.wav") as r:
            assert r.status == 200 and r.headers["content-type"] == "audio/wav" and await r.read() == wav
        async with s.head(base + "/media/tasks/task_S/0.png") as r:
            assert r.status == 200 and r.headers["content-length"] == str(len(png)) and await r.read() == b""
        async with s.post(base + "/media/tasks/task_S/0.png") as r:
            assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
        for path in ("/media/tasks/task_S/2.png", "/media/tasks/task_S/0.wav", "/media/secret.txt",
                     "/media/tasks/task_S/../../secret.txt", "/media/tasks/%2e%2e/%2e%2e/secret.txt",
                     "/media/tasks/task_S%2f..%2f..%2fsecret.txt", "/media/tasks/task_S/0.png/",
                     "/media/tasks/task_S/0.exe", "/media/tasks/" + "a" * 65 + "/0.png", "/media/"):
            async with s.get(base + path) as r:
                assert r.status == 404, path
                assert r.headers["x-content-type-options"] == "nosniff"
                assert await r.read() == b"not found\n"


# --- retention ------------------------------------------------------------------------------

async def test_delete_expired_removes_only_the_named_tasks_files(tmp_path):
    store = LocalStore(tmp_path)
    for task in ("task_old1", "task_old2", "task_new"):
        for n in range(2):
            await store.put(f"tasks/{task}/{n}.png", files.png(), "image/png")
    assert await delete_expired(store, ["task_old1", "task_old2", "task_never_stored"]) == 4
    assert sorted(os.listdir(tmp_path / "tasks")) == ["task_new"]
    assert await store.get("tasks/task_new/1.png") is not None
    assert await delete_expired(store, []) == 0
    with pytest.raises(ValueError):
        await delete_expired(store, ["../task_new"])
    assert expires_at_ms(1_000, Settings().media_retention_hours) == 1_000 + 168 * 3_600_000


async def test_byte_ranges_for_video_players(tmp_path):
    store = LocalStore(tmp_path)
    mp4 = files.mp4(bytes(range(200)))
    await store.put("tasks/task_V/0.mp4", mp4, "video/mp4")
    n = len(mp4)
    async with serve_asgi(media_app(store)) as base, aiohttp.ClientSession() as s:
        url = base + "/media/tasks/task_V/0.mp4"
        async with s.get(url) as r:
            assert r.status == 200 and r.headers["accept-ranges"] == "bytes" and await r.read() == mp4
        for rng, first, last in (("bytes=0-9", 0, 9), ("bytes=10-", 10, n - 1), ("bytes=-5", n - 5, n - 1),
                                 (f"bytes=5-{n + 100}", 5, n - 1), ("bytes=-99999", 0, n - 1)):
            async with s.get(url, headers={"Range": rng}) as r:
                assert r.status == 206, rng
                assert r.headers["content-range"] == f"bytes {first}-{last}/{n}"
                assert await r.read() == mp4[first:last + 1]
                assert r.headers["content-type"] == "video/mp4" and r.headers["x-content-type-options"] == "nosniff"
        for rng in (f"bytes={n}-", "bytes=9-3", "bytes=-0"):
            async with s.get(url, headers={"Range": rng}) as r:
                assert r.status == 416 and r.headers["content-range"] == f"bytes */{n}", rng
        for rng in ("bytes=0-1,5-6", "items=0-1", "bytes=-", "bytes=abc"):  # not one usable range: all of it
            async with s.get(url, headers={"Range": rng}) as r:
                assert r.status == 200 and await r.read() == mp4, rng


async def test_private_addresses_are_refused_unless_the_host_is_trusted(tmp_path):
    async def image(request):
        return web.Response(body=files.png())

    async with file_host({"/i.png": image}) as (base, seen), aiohttp.ClientSession() as session:
        port = base.rsplit(":", 1)[1]
        for url in (base + "/i.png", f"http://localhost:{port}/i.png", f"http://[::ffff:127.0.0.1]:{port}/i.png"):
            with pytest.raises(MediaError, match="private, loopback or link-local"):
                await save_outputs(LocalStore(tmp_path), session, "task_P", [Out(url=url)], public_base="http://gw",
                                   max_bytes=MB, allow_private=False)
        assert seen == []  # nothing was fetched
        saved = await save_outputs(LocalStore(tmp_path), session, "task_P", [Out(url=base + "/i.png")],
                                   public_base="http://gw", max_bytes=MB, allow_private=False,
                                   trusted_hosts=["127.0.0.1"])
        saved2 = await save_outputs(LocalStore(tmp_path), session, "task_Q", [Out(url=f"http://localhost:{port}/i.png")],
                                    public_base="http://gw", max_bytes=MB, allow_private=False,
                                    trusted_hosts=["LOCALHOST."])
    assert [f.content_type for f in saved + saved2] == ["image/png", "image/png"] and len(seen) == 2
