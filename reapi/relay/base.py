"""The interface every upstream type implements (one module per provider type).

The chat route speaks OpenAI's format to clients. An adapter turns the parsed
OpenAI request into the bytes its upstream expects and turns the upstream's
answer back into OpenAI's format, reporting token usage on the way so billing
can settle. Adapters do no I/O: the call pipeline (reapi.proxy) owns the
sockets, so one adapter is a set of pure, testable transformations.

Implementations subclass these protocols explicitly, so the members with a
default (Adapter.requires_max_tokens, Adapter.tokenizer_family,
StreamConverter.input_usage) are declared here once and read directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reapi.catalog import Channel
from reapi.errors import GatewayError


@dataclass(slots=True)
class Usage:
    """Token usage of one call, in the gateway's billing terms.

    prompt_tokens counts every input token, cached ones included (OpenAI's
    convention); cached_tokens is the part read from a prompt cache and
    cache_write_tokens the part written to one (Anthropic reports both).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


class StreamConverter(Protocol):
    """Turns one upstream stream into the client's SSE events, one upstream event at a time."""

    __slots__ = ()

    usage: Usage | None  # set once the upstream reported usage
    finished: bool  # True once the upstream signalled a normal end of stream

    def feed(self, data: bytes) -> list[bytes]:
        """Take the payload of one upstream SSE `data:` line (without the `data: ` prefix).

        Returns complete OpenAI SSE events to send to the client, each already
        framed as b"data: {...}\\n\\n". Never returns the final b"data: [DONE]";
        the relay sends that itself after settling the bill. Raises GatewayError
        when the upstream reports an error inside the stream.
        """
        ...

    def produced_text(self) -> str:
        """All text the model produced so far (content, tool-call arguments, reasoning).

        Used to count completion tokens when the stream ends without usage,
        e.g. on client disconnect."""
        ...

    def input_usage(self) -> Usage | None:
        """The prompt side of the usage as the upstream reported it before the end of the stream
        (Anthropic's message_start), completion_tokens 0; None while unknown (the default). When the
        client leaves before `usage` is set, the relay charges this prompt count instead of its own
        estimate (reapi.proxy.settle.usage_so_far)."""
        return None


class Adapter(Protocol):
    """One upstream type (see reapi.relay.registry)."""

    __slots__ = ()

    requires_max_tokens: bool = False  # the upstream requires an output cap: always send billing's cap
    tokenizer_family: str = "openai"  # reapi.billing.tokens family the prompt is counted with

    def build_request(
        self, channel: Channel, body: dict, upstream_model: str, *, stream: bool, max_tokens: int | None
    ) -> UpstreamRequest:
        """The upstream call for an already validated OpenAI chat request.

        `body` is the client's parsed body minus the gateway's own fields (e.g.
        `group`); the adapter must not mutate it. `max_tokens` is the output cap
        billing decided to send upstream (None: leave the client's value alone)."""
        ...

    def parse_response(self, raw: bytes, public_model: str) -> tuple[bytes, Usage | None]:
        """A successful (2xx) non-streaming upstream body -> (OpenAI chat.completion JSON bytes, usage)."""
        ...

    def stream_converter(self, public_model: str, upstream_model: str, include_usage: bool,
                         channel: Channel | None = None) -> StreamConverter:
        """A converter for one streaming call; include_usage: the client asked for the usage chunk;
        channel: whose secrets to scrub from in-stream error messages."""
        ...

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        """A non-2xx upstream answer -> the error the client sees (never leaking the channel's URL or key)."""
        ...
