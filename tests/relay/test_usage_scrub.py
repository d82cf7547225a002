"""Pure functions behind the hostile-upstream rules: reapi.relay.usage and reapi.relay.scrub."""
import logging

import orjson
import pytest

from reapi.catalog import Channel
from reapi.relay.base import Usage
from reapi.relay.openai import OpenAIStream, map_openai_error
from reapi.relay.scrub import MAX_TEXT, safe_code, scrub
from reapi.relay.usage import MAX_COUNT, anthropic_stream_usage, anthropic_usage, checked_usage, openai_usage
from tests.hostile import HOSTILE_KEY, secret_forms

BASE = "https://Upstream.Example.com:8443/v1"
CH = Channel(id=1, name="c", type="openai", base_url=BASE, api_key=HOSTILE_KEY, models=("m",), groups=("default",))


@pytest.mark.parametrize("value", [-1, 2**31, 1.0, "5", True, False, [1], {"a": 1}])
def test_any_invalid_count_discards_the_report(value, caplog):
    caplog.set_level(logging.WARNING)
    assert checked_usage(10, value) is None
    assert checked_usage(value, 10) is None
    assert checked_usage(10, 10, value) is None
    assert "malformed usage" in caplog.text and repr(value) not in caplog.text.split("malformed usage", 1)[1]


def test_valid_counts_and_clamps():
    assert checked_usage(0, 0) == Usage(0, 0)
    assert checked_usage(MAX_COUNT, MAX_COUNT, MAX_COUNT) == Usage(MAX_COUNT, MAX_COUNT, MAX_COUNT, 0)
    assert checked_usage(100, 5, 80, 50) == Usage(100, 5, 80, 20)  # cache parts clamped to the prompt
    assert checked_usage(10, 5, None, None) == Usage(10, 5)
    assert checked_usage(None, 5) is None and checked_usage(10, None) is None  # no usage


def test_openai_usage_shapes():
    assert openai_usage({"prompt_tokens": 10, "completion_tokens": 2,
                         "prompt_tokens_details": {"cached_tokens": 4}}) == Usage(10, 2, 4)
    assert openai_usage({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}) == Usage(10, 2)
    for bad in ({}, {"total_tokens": 12}, None, [], "x", {"prompt_tokens": 1, "completion_tokens": 1,
                                                          "prompt_tokens_details": [1]}):
        assert openai_usage(bad) is None


def test_anthropic_usage_adds_cache_parts_and_checks_the_total():
    u = {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7}
    assert anthropic_usage(u) == Usage(117, 3, 100, 7)
    assert anthropic_usage({**u, "cache_creation_input_tokens": -7}) is None
    assert anthropic_usage({**u, "input_tokens": MAX_COUNT}) is None  # the prompt total overflows
    assert anthropic_usage({**u, "output_tokens": None}) is None
    assert anthropic_usage({"input_tokens": 10, "output_tokens": -5}, prompt_only=True) == Usage(10, 0)
    started = {"input_tokens": 10, "output_tokens": 1}
    assert anthropic_stream_usage(started, {"output_tokens": 20}) == Usage(10, 20)
    assert anthropic_stream_usage(started, {}) is None  # message_start's output_tokens is a placeholder
    assert anthropic_stream_usage(started, None) is None
    assert anthropic_stream_usage(started, {"output_tokens": 20, "input_tokens": None}) == Usage(10, 20)
    assert anthropic_stream_usage(started, "x") is None


def test_scrub_catches_every_form_of_the_channel_secrets():
    forms = secret_forms(HOSTILE_KEY, BASE) + ["upstream.example.com", "UPSTREAM.EXAMPLE.COM:8443",
                                               BASE.replace("/", "\\/"), "sk-ant-api03-abc_DEF-123",
                                               "http://other.internal/x", "abcd****wxyz", "sk-...cdef",
                                               "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo"]
    text = scrub("leak: " + " | ".join(forms), CH)
    for form in forms:
        assert form.lower() not in text.lower(), (form, text)
    assert text.startswith("leak: [redacted]")
    assert scrub("x" * 5000, CH) == "x" * (MAX_TEXT - 1) + "…"


def test_scrub_keeps_ordinary_messages():
    msg = ("max_tokens is too large: 70000 > 64000. This model supports at most 64000 completion tokens; "
           "the task-force said: wait... gpt-4o-mini-2024-07-18, messages[0].content")
    assert scrub(msg, CH) == msg


@pytest.mark.parametrize("value, out", [("context_length_exceeded", "context_length_exceeded"),
                                        ("rate.limit-1", "rate.limit-1"), (400, None), (["a"], None),
                                        ("x" * 65, None), ("Bad Code", None), (HOSTILE_KEY.lower(), None),
                                        ("upstream.example.com", None), ("", None), (True, None)])
def test_safe_code(value, out):
    assert safe_code(value, CH) == out


def test_map_openai_error_sanitises_every_field():
    raw = orjson.dumps({"error": {"message": f"key {HOSTILE_KEY}", "type": BASE, "param": BASE, "code": 400}})
    e = map_openai_error(400, raw, CH)
    assert (e.status, e.message, e.type, e.param, e.code) == (400, "key [redacted]", "invalid_request_error",
                                                             "[redacted]", None)
    assert map_openai_error(302, b"", CH).code == "upstream_bad_response"
    assert map_openai_error(302, b"", CH).status == 502


def test_openai_stream_usage_and_model_without_compact_json():
    s = OpenAIStream("public", include_usage=False, channel=CH)
    out = s.feed(b'{"id": "1", "model": "private", "choices": [{"index": 0, "delta": {"content": "hi"}}]}')
    assert b"private" not in out[0] and orjson.loads(out[0][6:])["model"] == "public"
    assert s.feed(b'{"id": "1", "model": "private", "choices": [], "usage": {"prompt_tokens": 5, '
                  b'"completion_tokens": 2}}') == []
    assert s.usage == Usage(5, 2)
    s.feed(b'{"id":"1","model":"private","choices":[],"usage":{"prompt_tokens":-5,"completion_tokens":2}}')
    assert s.usage is None  # the last report wins; a malformed one counts as none
    # "usage": null in every chunk (include_usage on) is not parsed, and the compact model is set by surgery
    assert s.feed(b'{"id":"1","model":"private","usage":null,"choices":[]}') == [
        b'data: {"id":"1","model":"public","usage":null,"choices":[]}\n\n']


def test_openai_stream_error_with_id_is_raised_and_scrubbed():
    s = OpenAIStream("public", include_usage=False, channel=CH)
    with pytest.raises(Exception) as ei:
        s.feed(orjson.dumps({"id": "1", "error": {"message": f"at {BASE} with {HOSTILE_KEY}", "code": BASE}}))
    assert ei.value.code == "upstream_stream_error" and ei.value.message == "at [redacted] with [redacted]"
    assert s.feed(b'{"id":"1","choices":[{"index":0,"delta":{},"finish_reason":"error"}]}')  # a value, not a key
