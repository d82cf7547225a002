"""The Ark provider's requests and its reading of hostile answers: ids, statuses, progress, output
URLs and error messages are checked; the channel's key and URL never survive into a message."""
import orjson
import pytest

from reapi.catalog import Channel
from reapi.tasks.providers.ark import PROVIDER as ARK
from reapi.tasks.providers.base import TaskUpstreamError

CH = Channel(id=1, name="ark", type="ark", base_url="https://ark.example.com/api/v3", api_key="ark-secret-key-0123456789",
             models=("m",), groups=("default",))


def test_submit_request_shape():
    req = ARK.build_submit(CH, "seedance-x", "video", {
        "prompt": "a cat", "image_urls": ["https://i.example/a.png"], "duration": 5, "resolution": "720p",
        "generate_audio": False, "size": "16:9"})
    assert req.method == "POST" and req.url == "https://ark.example.com/api/v3/contents/generations/tasks"
    assert req.headers["Authorization"] == "Bearer ark-secret-key-0123456789"
    body = orjson.loads(req.body)
    assert body == {"model": "seedance-x", "content": [
        {"type": "text", "text": "a cat"},
        {"type": "image_url", "image_url": {"url": "https://i.example/a.png"}, "role": "first_frame"}],
        "duration": 5, "resolution": "720p", "generate_audio": False, "ratio": "16:9"}
    assert ARK.build_poll(CH, "cgt-1").url == "https://ark.example.com/api/v3/contents/generations/tasks/cgt-1"


@pytest.mark.parametrize("raw", [b'{"id": "x/../y"}', b'{"id": ""}', b'{"id": 5}', b'{"id": "' + b"a" * 129 + b'"}',
                                 b"{}"])
def test_bad_upstream_ids_are_refused(raw):
    with pytest.raises(TaskUpstreamError):
        ARK.parse_submit(CH, 200, raw)


@pytest.mark.parametrize("status,transient,code", [(429, True, 50002), (500, True, 50002), (503, True, 50002),
                                                  (401, True, 50002), (400, False, 50003), (422, False, 50003)])
def test_submit_errors(status, transient, code):
    raw = orjson.dumps({"error": {"code": "X", "message": f"bad key ark-secret-key-0123456789 at {CH.base_url}/x"}})
    with pytest.raises(TaskUpstreamError) as e:
        ARK.parse_submit(CH, status, raw)
    assert (e.value.transient, e.value.code) == (transient, code)
    assert "ark-secret-key" not in e.value.message and "ark.example.com" not in e.value.message


def test_poll_states_and_hostile_fields():
    p = ARK.parse_poll(CH, 200, orjson.dumps({"status": "running", "progress": 4000}))
    assert p.status == "processing" and p.progress is None
    p = ARK.parse_poll(CH, 200, orjson.dumps({"status": "queued", "progress": 40}))
    assert p.progress == 40
    p = ARK.parse_poll(CH, 200, orjson.dumps({"status": "succeeded", "content": {
        "video_url": "https://cdn.example/v.mp4", "last_frame_url": "file:///etc/passwd"}}))
    assert [(o.kind, o.url) for o in p.outputs] == [("video", "https://cdn.example/v.mp4")]
    with pytest.raises(TaskUpstreamError):  # finished without a usable file
        ARK.parse_poll(CH, 200, orjson.dumps({"status": "succeeded", "content": {"video_url": "javascript:x"}}))
    p = ARK.parse_poll(CH, 200, orjson.dumps({"status": "failed", "error": {
        "message": "moderated; see https://ark.example.com/api/v3/logs?key=ark-secret-key-0123456789"}}))
    assert p.status == "failed" and p.error_code == 50003
    assert "ark-secret-key" not in p.error_message and "ark.example.com" not in p.error_message
    assert ARK.parse_poll(CH, 200, orjson.dumps({"status": "cancelled"})).status == "failed"
    with pytest.raises(TaskUpstreamError) as e:
        ARK.parse_poll(CH, 200, orjson.dumps({"status": "weird"}))
    assert e.value.transient
    with pytest.raises(TaskUpstreamError) as e:
        ARK.parse_poll(CH, 200, b"<html>")
    assert e.value.transient
    with pytest.raises(TaskUpstreamError) as e:
        ARK.parse_poll(CH, 404, b"{}")
    assert not e.value.transient and e.value.code == 50003
