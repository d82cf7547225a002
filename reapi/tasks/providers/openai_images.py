"""OpenAI Images API (gpt-image-*, dall-e-*): synchronous, the images come back in the answer.

    POST {base_url}/images/generations  {"model", "prompt", "n", "size", "quality", ...}
    POST {base_url}/images/edits        the same plus "images": [{"image_url": URL}, ...] (JSON edits,
                                        used when the body has image_urls)
         -> {"created", "data": [{"b64_json": "...", "revised_prompt"?} | {"url": "..."}], "output_format"?}

base_url is the API root with its version, as for chat channels: https://api.openai.com/v1.
Fields passed through: prompt, n, quality, background, output_format, output_compression,
moderation, style, input_fidelity. `size` is OpenAI's ("1024x1024", "auto") as is, or a ratio
("16:9") mapped to the nearest of OpenAI's three shapes; `resolution` is ours (pricing) and not
sent. dall-e models are asked for response_format=b64_json (GPT image models always answer it).
Nothing to poll: `Submitted(None, done=Polled("completed", outputs=...))`. Every answer is
bounded: at most MAX_IMAGES images of at most MAX_IMAGE_BYTES each, base64 checked strictly.
"""
from __future__ import annotations

import base64
import binascii
import re

import orjson

from reapi.catalog import Channel
from reapi.tasks.providers.base import Output, Polled, ProviderRequest, Submitted, TaskUpstreamError
from reapi.tasks.providers.common import error_of, json_object, maybe_json_object, output_url

MAX_IMAGES = 16
MAX_IMAGE_BYTES = 64 * 1024 * 1024
PASS_THROUGH = ("prompt", "n", "quality", "background", "output_format", "output_compression", "moderation",
                "style", "input_fidelity")
FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
_PIXELS = re.compile(r"\d{2,5}x\d{2,5}")
_RATIO = re.compile(r"(\d{1,3}):(\d{1,3})")


def openai_size(size: object) -> str | None:
    """OpenAI's size for ours: WxH and "auto" as is, a ratio to square, landscape or portrait."""
    if not isinstance(size, str):
        return None
    if size == "auto" or _PIXELS.fullmatch(size):
        return size
    m = _RATIO.fullmatch(size)
    if m is None or not int(m.group(1)) or not int(m.group(2)):
        return None
    w, h = int(m.group(1)), int(m.group(2))
    return "1024x1024" if w == h else "1536x1024" if w > h else "1024x1536"


class OpenAIImages:
    type = "openai-images"

    def _headers(self, channel: Channel) -> dict[str, str]:
        return {"Authorization": f"Bearer {channel.api_key}", "Content-Type": "application/json"}

    def build_submit(self, channel: Channel, upstream_model: str, category: str, body: dict) -> ProviderRequest:
        payload: dict = {"model": upstream_model}
        for k in PASS_THROUGH:
            if k in body:
                payload[k] = body[k]
        size = openai_size(body.get("size"))
        if size is not None:
            payload["size"] = size
        if upstream_model.startswith("dall-e"):
            payload["response_format"] = "b64_json"
        path = "/images/generations"
        images = body.get("image_urls") or []
        if images:
            payload["images"] = [{"image_url": url} for url in images]
            path = "/images/edits"
        return ProviderRequest("POST", channel.base_url.rstrip("/") + path, self._headers(channel),
                               orjson.dumps(payload))

    def parse_submit(self, channel: Channel, status: int, raw: bytes) -> Submitted:
        if status != 200:
            raise error_of(channel, status, maybe_json_object(raw))
        try:
            data = json_object(raw, "images")
        except TaskUpstreamError as e:  # a 200 we cannot read: the images were made, asking again pays twice
            raise TaskUpstreamError(e.code, e.message, transient=False) from None
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise TaskUpstreamError(50002, "the upstream answered no images", transient=False)
        if len(items) > MAX_IMAGES:
            raise TaskUpstreamError(50002, f"the upstream answered more than {MAX_IMAGES} images", transient=False)
        ctype = FORMATS.get(data.get("output_format")) if isinstance(data.get("output_format"), str) else None
        outputs = tuple(_image(item, ctype) for item in items)
        return Submitted(None, done=Polled("completed", progress=100, outputs=outputs))

    def build_poll(self, channel: Channel, upstream_id: str) -> ProviderRequest:
        raise TaskUpstreamError(50001, "openai-images tasks finish at submit; there is nothing to poll",
                                transient=False)

    def parse_poll(self, channel: Channel, status: int, raw: bytes) -> Polled:
        raise TaskUpstreamError(50001, "openai-images tasks finish at submit; there is nothing to poll",
                                transient=False)


def _image(item: object, ctype: str | None) -> Output:
    if not isinstance(item, dict):
        raise TaskUpstreamError(50002, "the upstream answered an image that is not an object", transient=False)
    b64 = item.get("b64_json")
    if isinstance(b64, str):
        if len(b64) > (MAX_IMAGE_BYTES // 3 + 1) * 4:
            raise TaskUpstreamError(50002, "the upstream answered an image larger than "
                                    f"{MAX_IMAGE_BYTES} bytes", transient=False)
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise TaskUpstreamError(50002, "the upstream answered an image that is not base64",
                                    transient=False) from None
        if not data:
            raise TaskUpstreamError(50002, "the upstream answered an empty image", transient=False)
        return Output(data=data, content_type=ctype, kind="image")
    url = output_url(item.get("url"))
    if url is not None:
        return Output(url=url, content_type=ctype, kind="image")
    raise TaskUpstreamError(50002, "the upstream answered an image with neither b64_json nor an http(s) url",
                            transient=False)


PROVIDER = OpenAIImages()
