"""reapi-tasks: what it sends, and how it reads every answer, hostile ones included."""
from __future__ import annotations

import orjson
import pytest

from reapi.catalog import Channel
from reapi.tasks.providers.base import Output, Polled, TaskUpstreamError
from reapi.tasks.providers.reapi_tasks import PROVIDER

KEY = "rk_live_UPSTREAMsecret0123456789abcdefXYZ"
CH = Channel(id=2, name="up", type="reapi-tasks", base_url="https://tasks.upstream-host.example/api/v1/",
             api_key=KEY, models=("seedance",), groups=("default",))
TID = "task_01jdemo0000000000000000ab"


@pytest.mark.parametrize("category, path", [("image", "images"), ("video", "videos"), ("audio", "audio")])
def test_submit_request_per_category(category, path):
    req = PROVIDER.build_submit(CH, "up-model", category, {"prompt": "p", "duration": 5, "model": "ours"})
    assert (req.method, req.url) == ("POST", f"https://tasks.upstream-host.example/api/v1/{path}/generations")
    assert req.headers == {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert orjson.loads(req.body) == {"prompt": "p", "duration": 5, "model": "up-model"}


def test_poll_request_and_unknown_category():
    req = PROVIDER.build_poll(CH, TID)
    assert (req.method, req.url, req.body) == ("GET", f"https://tasks.upstream-host.example/api/v1/tasks/{TID}", None)
    assert req.headers == {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(TaskUpstreamError):
        PROVIDER.build_submit(CH, "m", "text", {})


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b"[]", b"", b'{"id": "task_x"'])
def test_an_unreadable_200_at_submit_fails_rather_than_submitting_again(raw):
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 200, raw)
    assert (e.value.code, e.value.transient) == (50002, False)


def test_submit_answer():
    s = PROVIDER.parse_submit(CH, 200, orjson.dumps({"id": TID, "model": "m", "status": "processing",
                                                     "created_at": 1}))
    assert s.upstream_id == TID and s.done is None


@pytest.mark.parametrize("raw", [
    orjson.dumps({"id": "t" * 129}), orjson.dumps({"id": "../../admin"}), orjson.dumps({"id": "a b"}),
    orjson.dumps({"id": 12345}), orjson.dumps({"id": ""}), orjson.dumps({"status": "processing"}),
    orjson.dumps({"id": "task_x\n"}),
])
def test_hostile_ids_fail_the_submit(raw):
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 200, raw)
    assert e.value.transient is False


@pytest.mark.parametrize("status, code, transient", [(429, 50002, True), (500, 50002, True), (502, 50002, True),
                                                     (401, 50002, True), (402, 50002, True), (400, 50003, False),
                                                     (404, 50003, False), (409, 50003, False)])
def test_submit_errors(status, code, transient):
    raw = orjson.dumps({"error": {"code": 20001, "message": "Invalid parameter: duration", "request_id": "r"}})
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, status, raw)
    assert (e.value.code, e.value.transient) == (code, transient)
    if code == 50003:
        assert e.value.message == "Invalid parameter: duration"


def test_echoed_keys_and_hosts_are_scrubbed():
    raw = orjson.dumps({"error": {"code": 10003, "message": f"key {KEY} is not valid at "
                                                             "https://tasks.upstream-host.example/api/v1"}})
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_submit(CH, 400, raw)
    assert KEY not in e.value.message and "upstream-host" not in e.value.message
    failed = PROVIDER.parse_poll(CH, 200, orjson.dumps({"id": TID, "status": "failed", "error": {
        "code": 50003, "message": f"provider said no to {KEY} (tasks.upstream-host.example)"}}))
    assert failed.status == "failed" and KEY not in failed.error_message and "upstream-host" not in failed.error_message


def _poll(body) -> Polled:
    return PROVIDER.parse_poll(CH, 200, orjson.dumps(body))


@pytest.mark.parametrize("progress, seen", [(40, 40), (0, 0), (100, 100), (150, None), (-1, None), ("50", None),
                                            (True, None), (50.5, None)])
def test_processing_and_progress(progress, seen):
    assert _poll({"id": TID, "status": "processing", "progress": progress}) == Polled("processing", progress=seen)


def test_statuses_that_mean_still_running():
    for state in ("queued", "pending", "running", "in_progress"):
        assert _poll({"status": state}).status == "processing"


def test_completed_outputs():
    p = _poll({"id": TID, "status": "completed", "output": {
        "video_urls": ["https://cdn.up/0.mp4"], "last_frame_url": "https://cdn.up/1.png"}})
    assert p == Polled("completed", progress=100, outputs=(Output(url="https://cdn.up/0.mp4", kind="video"),
                                                           Output(url="https://cdn.up/1.png", kind="last_frame")))
    p = _poll({"status": "completed", "output": {"image_urls": ["http://a/0.png", "http://a/1.png"],
                                                 "audio_urls": "http://a/2.mp3"}})
    assert [(o.kind, o.url) for o in p.outputs] == [("image", "http://a/0.png"), ("image", "http://a/1.png"),
                                                    ("audio", "http://a/2.mp3")]


@pytest.mark.parametrize("output", [
    None, "https://a/0.png", {}, {"image_urls": []}, {"image_urls": ["file:///etc/passwd"]},
    {"image_urls": ["data:image/png;base64,iVBOR"]}, {"video_urls": ["ftp://a/0.mp4"]}, {"image_urls": [42]},
    {"image_urls": 42}, {"image_urls": ["https://a/0.png"], "last_frame_url": "javascript:alert(1)"},
    {"image_urls": [f"https://a/{i}.png" for i in range(33)]}, {"image_urls": ["https://" + "a" * 5000]},
])
def test_hostile_outputs_fail_the_task(output):
    with pytest.raises(TaskUpstreamError) as e:
        _poll({"id": TID, "status": "completed", "output": output})
    assert e.value.transient is False and e.value.code == 50002


@pytest.mark.parametrize("error, code, message", [
    ({"code": 50005, "message": "deadline passed"}, 50005, "deadline passed"),
    ({"code": 50002, "message": "unavailable"}, 50002, "unavailable"),
    ({"code": 20001, "message": "bad duration"}, 50003, "bad duration"),
    ({"code": "50004", "message": "x"}, 50003, "x"),
    ({"code": 2**63 - 1, "message": ""}, 50003, "the upstream task failed"),
    (None, 50003, "the upstream task failed"), ("boom", 50003, "the upstream task failed"),
    ({"message": "m" * 5000}, 50003, "m" * 499 + "…"),
])
def test_failed_tasks(error, code, message):
    p = _poll({"id": TID, "status": "failed", "error": error})
    assert (p.status, p.error_code, p.error_message) == ("failed", code, message)


@pytest.mark.parametrize("status, raw, code, transient", [
    (200, b"not json", 50002, True), (200, b"[]", 50002, True), (200, orjson.dumps({"status": "exploded"}), 50002, True),
    (200, orjson.dumps({"status": None}), 50002, True), (404, b"{}", 50003, False), (429, b"", 50002, True),
    (503, b"<html>", 50002, True), (400, orjson.dumps({"error": {"code": 20003, "message": "gone"}}), 50003, False),
])
def test_poll_errors(status, raw, code, transient):
    with pytest.raises(TaskUpstreamError) as e:
        PROVIDER.parse_poll(CH, status, raw)
    assert (e.value.code, e.value.transient) == (code, transient)
