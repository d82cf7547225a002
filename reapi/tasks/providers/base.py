"""The interface of async task providers: one module per upstream type, pure functions (no I/O)."""
from __future__ import annotations
from dataclasses import dataclass, field
from typing import Literal, Protocol
from reapi.catalog import Channel

@dataclass(frozen=True, slots=True)
class ProviderRequest:
    method: Literal["GET", "POST"]
    url: str
    headers: dict[str, str]
    body: bytes | None = None

@dataclass(frozen=True, slots=True)
class Output:
    """One output file: either a URL to copy (http/https only) or the bytes themselves (b64 answers)."""
    url: str | None = None
    data: bytes | None = None
    content_type: str | None = None   # declared type; storage sniffs and checks the bytes anyway
    kind: Literal["image", "video", "audio", "last_frame"] = "image"

@dataclass(frozen=True, slots=True)
class Polled:
    status: Literal["processing", "completed", "failed"]
    progress: int | None = None            # 0..100 when the upstream reports it
    outputs: tuple[Output, ...] = ()       # when completed
    error_code: int | None = None          # 50003 upstream rejected, 50002 unavailable ...
    error_message: str | None = None       # already scrubbed of keys/URLs/hosts (reapi.relay.scrub)

@dataclass(frozen=True, slots=True)
class Submitted:
    upstream_id: str | None                # the upstream's task id (validated: <=128 chars, [A-Za-z0-9_.:-])
    done: Polled | None = None             # synchronous providers answer the result at once

class TaskUpstreamError(Exception):
    """An upstream answer that is not a success. transient=True: retry/poll later (429, 5xx, timeouts);
    False: the task failed (code 50003 with the scrubbed message)."""
    def __init__(self, code: int, message: str, *, transient: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after_s = retry_after_s

class TaskProvider(Protocol):
    type: str                              # the channel type, e.g. "ark", "openai-images", "reapi-tasks"
    def build_submit(self, channel: Channel, upstream_model: str, category: str, body: dict) -> ProviderRequest: ...
    def parse_submit(self, channel: Channel, status: int, raw: bytes) -> Submitted: ...   # raises TaskUpstreamError
    def build_poll(self, channel: Channel, upstream_id: str) -> ProviderRequest: ...
    def parse_poll(self, channel: Channel, status: int, raw: bytes) -> Polled: ...          # raises TaskUpstreamError
