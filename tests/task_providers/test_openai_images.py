"""openai-images: what it sends, and how it reads every answer, hostile ones included."""
from __future__ import annotations

import base64

import orjson
import pytest

from reapi.catalog import Channel
from reapi.mock_upstream import media as files
from reapi.tasks.providers import openai_images
from reapi.tasks.providers.base import Output, TaskUpstreamError
from reapi.tasks.providers.openai_images import PROVIDER, openai_size

KEY = "sk-proj-UPSTREAMsecret0123456789abcdefXYZ"
CH = Channel(id=1, name="img", type="openai-images", base_url="https://images.upstream-host.example/v1",
             api_key=KEY, models=("gpt-image-2",), groups=("default",))
PNG = files.png()
B64 = base64.b64encode(PNG).decode()


def answer(data, **extra) -> bytes:
    return orjson.dumps({"created": 1, "data": data, **extra})


def test_generations_request():
    req = PROVIDER.build_submit(CH, "gpt-image-1", "image", {"prompt": "a cat", "n": 2, "size": "16:9",
                                                             "resolution": "2k", "quality": "high"})
    assert (req.method, req.url) == ("POST", "https://images.upstream-host.example/v1/images/generations")
    assert req.headers == {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert orjson.loads(req.body) == {"model": "gpt-image-1", "prompt": "a cat", "n": 2, "quality": "high",
                                      "size": "1536x1024"}


def test_edits_request_with_image_urls_and_dalle_asks_for_b64():
    req = PROVIDER.build_submit(CH, "gpt-image-2", "image", {"prompt": "p", "image_urls": ["https://a/1.png"]})
    assert req.url.endswith("/v1/images/edits")
    assert orjson.loads(req.body)["images"] == [{"image_url": "https://a/1.png"}]
    req = PROVIDER.build_submit(CH, "dall-e-3", "image", {"prompt": "p"})
    assert orjson.loads(req.body)["response_format"] == "b64_json"


@pytest.mark.parametrize("size, sent", [("1:1", "1024x1024"), ("3:2", "1536x1024"), ("9:16", "1024x1536"),
                                        ("1024x1024", "1024x1024"), ("auto", "auto"), ("0:1", None),
                                        ("huge", None), (7, None), ("1:1; drop", None)])
def test_sizes(size, sent):
    assert openai_size(size) == sent


def test_b64_answer_is_done_at_submit():
    s = PROVIDER.parse_submit(CH, 200, answer([{"b64_json": B64, "revised_prompt": "x"}, {"b64_json": B64}],
                                              output_format="png"))
    assert s.upstream_id is None and s.done.status == "completed" and s.done.progress == 100
    assert s.done.outputs == (Output(data=PNG, content_type="image/png", kind="image"),) * 2


def test_url_answers_are_kept_when_http():
    s = PROVIDER.parse_submit(CH, 200, answer([{"url": "https://cdn.example/1.png"}]))
    assert s.done.outputs == (Output(url="https://cdn.example/1.png", kind="image"),)


@pytest.mark.parametrize("raw, problem", [
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (orjson.dumps({"created": 1}), "no images"),
    (answer([]), "no images"),
    (answer("x"), "no images"),
    (answer([{"b64_json": B64}] * 17), "more than 16 images"),
    (answer(["x"]), "not an object"),
    (answer([{"b64_json": "!!not base64!!"}]), "not base64"),
    (answer([{"b64_json": ""}]), "empty image"),
    (answer([{"url": "file:///etc/passwd"}]), "neither b64_json nor an http(s) url"),
    (answer([{"url": "data:image/png;base64," + B64}]), "neither b64_json nor an http(s) url"),
    (answer([{"url": "javascript:alert(1)"}]), "neither b64_json nor an http(s) url"),
    (answer([{"url": "https://cdn.example/a b.png"}]), "neither b64_json nor an http(s) url"),
    (answer([{"revised_prompt": "no image"}]), "neither b64_json nor an http(s) url"),
])
def test_hostile_200_answers_fail_the_task_without_asking_again(raw, problem):
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 200, raw)
    assert problem in e.value.message and e.value.code == 50002 and e.value.transient is False


def test_an_image_over_the_size_bound_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(openai_images, "MAX_IMAGE_BYTES", 300)
    PROVIDER.parse_submit(CH, 200, answer([{"b64_json": base64.b64encode(bytes(300)).decode()}]))
    with pytest.raises(TaskUpstreamError, match="larger than 300 bytes"):
        PROVIDER.parse_submit(CH, 200, answer([{"b64_json": base64.b64encode(bytes(400)).decode()}]))


@pytest.mark.parametrize("status, transient, code", [(429, True, 50002), (500, True, 50002), (503, True, 50002),
                                                     (401, True, 50002), (403, True, 50002), (400, False, 50003),
                                                     (404, False, 50003), (413, False, 50003)])
def test_error_statuses(status, transient, code):
    raw = orjson.dumps({"error": {"message": "Your request was rejected as a result of our safety system.",
                                  "type": "image_generation_user_error", "code": "moderation_blocked"}})
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, status, raw)
    assert (e.value.transient, e.value.code) == (transient, code)
    if code == 50003:
        assert e.value.message == "Your request was rejected as a result of our safety system."


def test_keys_and_hosts_echoed_back_are_scrubbed():
    raw = orjson.dumps({"error": {"message": f"Incorrect API key provided: {KEY}. Base "
                                             "https://images.upstream-host.example/v1 said no; "
                                             "also sk-other-1234567890abcdef1234567890", "code": "invalid"}})
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 400, raw)
    msg = e.value.message
    assert KEY not in msg and "upstream-host" not in msg and "sk-other" not in msg and "[redacted]" in msg
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 400, b"not json at all")
    assert e.value.message == "upstream answered HTTP 400"


def test_nothing_to_poll():
    with pytest.raises(TaskUpstreamError):
        PROVIDER.build_poll(CH, "x")
    with pytest.raises(TaskUpstreamError):
        PROVIDER.parse_poll(CH, 200, b"{}")
