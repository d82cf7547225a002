"""Both providers against the demo upstream over real sockets, the way the worker uses them
(send what build_* made, no redirects, hand the answer to parse_*), and their outputs copied
into a media store: every file the demo upstream makes is a valid file of its kind."""
from __future__ import annotations

import aiohttp
import pytest

from reapi.catalog import Channel
from reapi.media import save_outputs, sniff
from reapi.media.local import LocalStore
from reapi.tasks.providers.base import ProviderRequest, TaskUpstreamError
from reapi.tasks.providers.openai_images import PROVIDER as IMAGES
from reapi.tasks.providers.reapi_tasks import PROVIDER as REAPI
from tests.harness import UPSTREAM_KEY


async def send(session: aiohttp.ClientSession, req: ProviderRequest) -> tuple[int, bytes]:
    async with session.request(req.method, req.url, headers=req.headers, data=req.body,
                               allow_redirects=False) as r:
        return r.status, await r.content.read(8 << 20)


def channel(upstream, type: str, base: str, key: str = UPSTREAM_KEY) -> Channel:
    return Channel(id=9, name=type, type=type, base_url=upstream.url + base, api_key=key, models=("m",),
                   groups=("default",))


async def test_openai_images_end_to_end(upstream, tmp_path):
    ch = channel(upstream, "openai-images", "/v1")
    async with aiohttp.ClientSession() as s:
        status, raw = await send(s, IMAGES.build_submit(ch, "gpt-image-2", "image", {"prompt": "a fox", "n": 2}))
        done = IMAGES.parse_submit(ch, status, raw).done
        assert done.status == "completed" and len(done.outputs) == 2
        status, raw = await send(s, IMAGES.build_submit(ch, "gpt-image-2", "image", {
            "prompt": "edit [images url]", "image_urls": ["https://in.example/a.png"]}))
        linked = IMAGES.parse_submit(ch, status, raw).done
        assert linked.outputs[0].url.startswith(upstream.url)
        saved = await save_outputs(LocalStore(tmp_path), s, "task_img", [*done.outputs, *linked.outputs],
                                   public_base="http://gw", max_bytes=1 << 20)
    assert [f.content_type for f in saved] == ["image/png"] * 3
    for f in saved:
        data, _ = await LocalStore(tmp_path).get(f.key)
        assert sniff(data).ext == "png"


@pytest.mark.parametrize("prompt, code, transient", [
    ("[images reject]", 50003, False), ("[images status=503]", 50002, True), ("[images echo_key]", 50002, True),
])
async def test_openai_images_errors(upstream, prompt, code, transient):
    ch = channel(upstream, "openai-images", "/v1")
    async with aiohttp.ClientSession() as s:
        status, raw = await send(s, IMAGES.build_submit(ch, "gpt-image-2", "image", {"prompt": prompt}))
    with pytest.raises(TaskUpstreamError) as e:
        IMAGES.parse_submit(ch, status, raw)
    assert (e.value.code, e.value.transient) == (code, transient)
    assert UPSTREAM_KEY not in e.value.message and "127.0.0.1" not in e.value.message


async def run_task(s, ch, category: str, body: dict, polls: int = 20):
    status, raw = await send(s, REAPI.build_submit(ch, "up-model", category, body))
    sub = REAPI.parse_submit(ch, status, raw)
    seen = []
    for _ in range(polls):
        status, raw = await send(s, REAPI.build_poll(ch, sub.upstream_id))
        try:
            p = REAPI.parse_poll(ch, status, raw)
        except TaskUpstreamError as e:
            seen.append(("error", e.code, e.transient))
            continue
        seen.append((p.status, p.progress))
        if p.status != "processing":
            return p, seen
    raise AssertionError(f"not finished: {seen}")


async def test_reapi_tasks_end_to_end(upstream, tmp_path):
    ch = channel(upstream, "reapi-tasks", "/api/v1")
    store = LocalStore(tmp_path)
    async with aiohttp.ClientSession() as s:
        video, seen = await run_task(s, ch, "video", {"prompt": "waves [reapi steps=2 busy=1]",
                                                      "return_last_frame": True})
        assert seen[0] == ("error", 50002, True)  # a 429 while polling: try again later
        assert [x[0] for x in seen[1:]] == ["processing", "processing", "completed"]
        assert [o.kind for o in video.outputs] == ["video", "last_frame"]
        songs, _ = await run_task(s, ch, "audio", {"prompt": "a song", "number_of_songs": 2})
        images, _ = await run_task(s, ch, "image", {"prompt": "cats", "n": 3})
        saved = await save_outputs(store, s, "task_all", [*video.outputs, *songs.outputs, *images.outputs],
                                   public_base="http://gw", max_bytes=1 << 20)
        failed, _ = await run_task(s, ch, "video", {"prompt": "[reapi fail]"})
        async with s.get(upstream.url + "/_mock/reapi/stats") as r:
            stats = await r.json()
    assert [(f.kind, f.content_type) for f in saved] == [
        ("video", "video/mp4"), ("last_frame", "image/png"), ("audio", "audio/mpeg"), ("audio", "audio/mpeg"),
        ("image", "image/png"), ("image", "image/png"), ("image", "image/png")]
    assert (failed.status, failed.error_code) == ("failed", 50003)
    assert stats["submits"] == 4  # each task sent once


@pytest.mark.parametrize("prompt, key, code, transient", [
    ("[reapi reject]", UPSTREAM_KEY, 50003, False), ("[reapi broke]", UPSTREAM_KEY, 50002, True),
    ("ok", "rk_live_wrongkey", 50002, True),
])
async def test_reapi_tasks_submit_errors(upstream, prompt, key, code, transient):
    ch = channel(upstream, "reapi-tasks", "", key=key)
    async with aiohttp.ClientSession() as s:
        status, raw = await send(s, REAPI.build_submit(ch, "m", "image", {"prompt": prompt}))
    with pytest.raises(TaskUpstreamError) as e:
        REAPI.parse_submit(ch, status, raw)
    assert (e.value.code, e.value.transient) == (code, transient)


async def test_an_unknown_upstream_task_fails(upstream):
    ch = channel(upstream, "reapi-tasks", "")
    async with aiohttp.ClientSession() as s:
        status, raw = await send(s, REAPI.build_poll(ch, "task_nope"))
    with pytest.raises(TaskUpstreamError) as e:
        REAPI.parse_poll(ch, status, raw)
    assert (e.value.code, e.value.transient) == (50003, False)
