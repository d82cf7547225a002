"""Another gateway of this same task API (an upstream reAPI, or another reapi): resell its models.

    POST {base}/api/v1/{images|videos|audio}/generations  {"model", ...the client's fields}
         -> {"id": "task_...", "model", "status": "processing", "created_at"}
    GET  {base}/api/v1/tasks/{id}
         -> {"id", "model", "status": processing|completed|failed, "progress"?, "output": {"image_urls" |
             "video_urls" | "audio_urls": [URL, ...], "last_frame_url"?: URL}, "error": {"code", "message"} | null}

base_url is the gateway's root (https://reapi.example); a trailing /api/v1 is accepted too. The
key is a Bearer token (the upstream's rk_live_ key). The client's fields are passed through as
they are (the body was already checked against the model's schema here; the upstream checks
again). Errors are its {"error": {"code": <5 digits>, "message"}}: 429 and 5xx are transient, and
so are 401/403 (our key) and 402 (our balance there: the channel's problem, not the task's); other
4xx reject the task; a 200 whose body cannot be read fails the task (it may exist upstream: it is
never submitted twice). A failed task keeps the upstream's code when it is 50002-50005, else 50003,
with the upstream's message scrubbed. Every output must be an http(s) URL (else the task fails).
"""
from __future__ import annotations

from typing import Any

import orjson

from reapi.catalog import Channel
from reapi.relay.scrub import scrub
from reapi.tasks.providers.base import Output, Polled, ProviderRequest, Submitted, TaskUpstreamError
from reapi.tasks.providers.common import error_of, json_object, maybe_json_object, output_url, progress, upstream_id

ENDPOINTS = {"image": "images", "video": "videos", "audio": "audio"}
OUTPUT_FIELDS = (("image_urls", "image"), ("video_urls", "video"), ("audio_urls", "audio"))
MAX_OUTPUTS = 32
KEPT_FAILURE_CODES = (50002, 50003, 50004, 50005)
PROCESSING = ("processing", "queued", "pending", "running", "in_progress")


def api_root(channel: Channel) -> str:
    base = channel.base_url.rstrip("/")
    return base[: -len("/api/v1")] if base.endswith("/api/v1") else base


class ReapiTasks:
    type = "reapi-tasks"

    def _headers(self, channel: Channel, body: bool) -> dict[str, str]:
        h = {"Authorization": f"Bearer {channel.api_key}"}
        if body:
            h["Content-Type"] = "application/json"
        return h

    def build_submit(self, channel: Channel, upstream_model: str, category: str, body: dict) -> ProviderRequest:
        endpoint = ENDPOINTS.get(category)
        if endpoint is None:
            raise TaskUpstreamError(50001, f"no reapi-tasks endpoint for category {category!r}", transient=False)
        payload = {**body, "model": upstream_model}
        return ProviderRequest("POST", f"{api_root(channel)}/api/v1/{endpoint}/generations",
                               self._headers(channel, True), orjson.dumps(payload))

    def parse_submit(self, channel: Channel, status: int, raw: bytes) -> Submitted:
        if status != 200:
            raise _error(channel, status, raw)
        try:
            data = json_object(raw, "submit")
        except TaskUpstreamError as e:  # a 200 we cannot read: the task may exist there; never send it twice
            raise TaskUpstreamError(e.code, e.message, transient=False) from None
        tid = upstream_id(data.get("id"))
        if data.get("status") == "failed":
            return Submitted(tid, done=_failed(channel, data))
        return Submitted(tid)

    def build_poll(self, channel: Channel, upstream_id: str) -> ProviderRequest:
        return ProviderRequest("GET", f"{api_root(channel)}/api/v1/tasks/{upstream_id}",
                               self._headers(channel, False))

    def parse_poll(self, channel: Channel, status: int, raw: bytes) -> Polled:
        if status == 404:
            raise TaskUpstreamError(50003, "the upstream no longer knows this task", transient=False)
        if status != 200:
            raise _error(channel, status, raw)
        data = json_object(raw, "task")
        state = data.get("status")
        if state in PROCESSING:
            return Polled("processing", progress=progress(data.get("progress")))
        if state == "completed":
            return Polled("completed", progress=100, outputs=_outputs(data.get("output")))
        if state in ("failed", "cancelled", "expired"):
            return _failed(channel, data)
        raise TaskUpstreamError(50002, "the upstream's task has an unknown status", transient=True)


def _outputs(output: Any) -> tuple[Output, ...]:
    if not isinstance(output, dict):
        raise TaskUpstreamError(50002, "the upstream's finished task has no output", transient=False)
    found: list[Output] = []
    for field, kind in OUTPUT_FIELDS:
        urls = output.get(field)
        if urls is None:
            continue
        for url in [urls] if isinstance(urls, str) else urls if isinstance(urls, list) else [None]:
            found.append(_output(url, kind))
            if len(found) > MAX_OUTPUTS:
                raise TaskUpstreamError(50002, f"the upstream answered more than {MAX_OUTPUTS} outputs",
                                        transient=False)
    if output.get("last_frame_url") is not None:
        found.append(_output(output["last_frame_url"], "last_frame"))
    if not found:
        raise TaskUpstreamError(50002, "the upstream's finished task has no output file", transient=False)
    return tuple(found)


def _output(url: Any, kind: str) -> Output:
    checked = output_url(url)
    if checked is None:
        raise TaskUpstreamError(50002, "the upstream answered an output that is not an http(s) URL",
                                transient=False)
    return Output(url=checked, kind=kind)  # type: ignore[arg-type]


def _failed(channel: Channel, data: dict) -> Polled:
    err = data.get("error")
    code, message = 50003, "the upstream task failed"
    if isinstance(err, dict):
        if type(err.get("code")) is int and err["code"] in KEPT_FAILURE_CODES:
            code = err["code"]
        if isinstance(err.get("message"), str) and err["message"].strip():
            message = scrub(err["message"], channel, limit=500)
    return Polled("failed", error_code=code, error_message=message)


def _error(channel: Channel, status: int, raw: bytes) -> TaskUpstreamError:
    if status == 402:
        return TaskUpstreamError(50002, "upstream unavailable (HTTP 402)", transient=True)
    return error_of(channel, status, maybe_json_object(raw))


PROVIDER = ReapiTasks()
