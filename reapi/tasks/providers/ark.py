"""Volcengine Ark content-generation tasks (Seedance video, Seedream): create a task, get it by id.

    POST {base_url}/contents/generations/tasks  {"model", "content": [...], resolution, ratio, duration, ...}
         -> {"id": "cgt-..."}
    GET  {base_url}/contents/generations/tasks/{id}
         -> {"status": queued|running|succeeded|failed|cancelled, "content": {"video_url", "last_frame_url"},
             "error": {"code", "message"}}

base_url is the API root, e.g. https://ark.cn-beijing.volces.com/api/v3. The body's prompt is the
text item of `content`; image_urls are reference images (first_frame when there is one image and
no other media), video_urls and audio_urls reference media; size becomes Ark's `ratio`.
"""
from __future__ import annotations

import orjson

from reapi.catalog import Channel
from reapi.tasks.providers.base import Output, Polled, ProviderRequest, Submitted, TaskUpstreamError
from reapi.tasks.providers.common import error_of, json_object, maybe_json_object, output_url, progress, upstream_id

PASS_THROUGH = ("resolution", "duration", "generate_audio", "return_last_frame", "seed", "watermark",
                "camera_fixed", "fps")


class Ark:
    type = "ark"

    def _headers(self, channel: Channel) -> dict[str, str]:
        return {"Authorization": f"Bearer {channel.api_key}", "Content-Type": "application/json"}

    def build_submit(self, channel: Channel, upstream_model: str, category: str, body: dict) -> ProviderRequest:
        content: list[dict] = []
        if body.get("prompt"):
            content.append({"type": "text", "text": body["prompt"]})
        images = body.get("image_urls") or []
        others = bool(body.get("video_urls") or body.get("audio_urls"))
        role = "first_frame" if len(images) == 1 and not others else "reference_image"
        for url in images:
            content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
        for item in body.get("image_with_roles") or []:
            content.append({"type": "image_url", "image_url": {"url": item["url"]}, "role": item["role"]})
        for url in body.get("video_urls") or []:
            content.append({"type": "video_url", "video_url": {"url": url}, "role": "reference_video"})
        for url in body.get("audio_urls") or []:
            content.append({"type": "audio_url", "audio_url": {"url": url}, "role": "reference_audio"})
        payload: dict = {"model": upstream_model, "content": content}
        for k in PASS_THROUGH:
            if k in body:
                payload[k] = body[k]
        if "size" in body:
            payload["ratio"] = body["size"]
        return ProviderRequest("POST", channel.base_url.rstrip("/") + "/contents/generations/tasks",
                               self._headers(channel), orjson.dumps(payload))

    def parse_submit(self, channel: Channel, status: int, raw: bytes) -> Submitted:
        if status != 200:
            raise error_of(channel, status, maybe_json_object(raw))
        return Submitted(upstream_id(json_object(raw, "submit").get("id")))

    def build_poll(self, channel: Channel, upstream_id: str) -> ProviderRequest:
        return ProviderRequest("GET", channel.base_url.rstrip("/") + "/contents/generations/tasks/" + upstream_id,
                               self._headers(channel))

    def parse_poll(self, channel: Channel, status: int, raw: bytes) -> Polled:
        if status == 404:
            raise TaskUpstreamError(50003, "the upstream no longer knows this task", transient=False)
        if status != 200:
            raise error_of(channel, status, maybe_json_object(raw))
        data = json_object(raw, "task")
        state = data.get("status")
        if state in ("queued", "running"):
            return Polled("processing", progress=progress(data.get("progress")))
        if state == "succeeded":
            content = data.get("content") if isinstance(data.get("content"), dict) else {}
            outputs = []
            for field, kind, ctype in (("video_url", "video", "video/mp4"), ("image_url", "image", None),
                                       ("audio_url", "audio", None), ("last_frame_url", "last_frame", None)):
                url = output_url(content.get(field))
                if url is not None:
                    outputs.append(Output(url=url, kind=kind, content_type=ctype))
            if not outputs:
                raise TaskUpstreamError(50002, "the upstream's finished task has no output file", transient=False)
            return Polled("completed", progress=100, outputs=tuple(outputs))
        if state in ("failed", "cancelled", "expired"):
            err = error_of(channel, 400, data) if data.get("error") else None
            message = err.message if err is not None else f"the upstream task was {state}"
            return Polled("failed", error_code=50003, error_message=message)
        raise TaskUpstreamError(50002, "the upstream's task has an unknown status", transient=True)


PROVIDER = Ark()
