"""Test directives and the format-neutral reply model shared by both wire formats.

A request steers the mock with directives written in the text of its LAST user
message, e.g. ``"hi [mock status=503] [mock words=3]"``.  Several directives may
share one bracket (``[mock words=3 no_usage]``).  Directives are parsed only when
the text contains ``[mock``; an unknown directive or a malformed value is answered
with HTTP 400 so that a typo in a test fails loudly instead of being ignored.

Reply text
    A deterministic walk through :data:`VOCAB`, a fixed vocabulary in which every
    word *with its leading space* is exactly one o200k_base token, and in which any
    prefix of the walk also encodes to exactly as many tokens as it has words.  One
    word is one stream chunk, and the reported completion/output tokens equal the
    number of words emitted.  A reply to a tool result is prefixed with the four
    tokens ``"Tool" " result" " received" ":"``, which count as emitted tokens too.

Prompt/input tokens (when ``[mock prompt_tokens=N]`` is not given)
    The sum, over every text piece of the request, of the o200k_base token count of
    that piece (``encode_ordinary``: special-token text is counted as plain text).
    Pieces are: the system prompt(s), every message's string content, every text
    part/block of list contents, every tool call's arguments (OpenAI
    ``tool_calls[].function.arguments``; Anthropic ``tool_use.input`` serialised as
    compact JSON) and every tool result's text.  Role names, tool names and tool
    definitions, images and thinking blocks are not counted.  No per-message
    overhead is added, so the count is reproducible with any o200k_base tokenizer.
"""
from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

# --------------------------------------------------------------------------------------
# Vocabulary (each " word" is one o200k_base token; checked by the tests)
# --------------------------------------------------------------------------------------

_WORDS = (
    "the quick brown fox jumps over lazy dog and a small river runs through green "
    "valley where tall trees stand near old stone bridge while birds sing songs about "
    "bright morning light clouds drift across blue sky people walk along quiet road "
    "toward busy market town children play games under warm sun farmers grow fresh "
    "food in rich soil every season brings new colors to land water flows down from "
    "high mountain peaks into deep lake"
).split()

VOCAB: tuple[str, ...] = tuple(" " + w for w in _WORDS)
TOOL_RESULT_PREFIX: tuple[str, ...] = ("Tool", " result", " received", ":")
THINKING_TOKENS: tuple[str, ...] = ("Let", " me", " think", " about", " this", ".")
THINKING_SIGNATURE = "bW9jay10aGlua2luZy1zaWduYXR1cmU="  # base64("mock-thinking-signature")
TOOL_STRING_VALUE = "Tokyo"

# A long precomputed walk so that a reply is a slice, not a loop.
_CYCLE: tuple[str, ...] = VOCAB * 64  # 4864 words


def reply_words(n: int) -> tuple[str, ...]:
    """The first ``n`` words of the deterministic walk."""
    if n <= len(_CYCLE):
        return _CYCLE[:n]
    return tuple(itertools.islice(itertools.cycle(VOCAB), n))


# --------------------------------------------------------------------------------------
# Token counting
# --------------------------------------------------------------------------------------

_ENCODING: Any = None


def _encoding() -> Any:
    global _ENCODING
    if _ENCODING is None:
        import bpe_openai

        _ENCODING = bpe_openai.get_encoding("o200k_base")
    return _ENCODING


def warm_tokenizer() -> None:
    """Load o200k_base now rather than on the first counted request."""
    count_tokens("warm up")


@lru_cache(maxsize=8192)
def count_tokens(text: str) -> int:
    """o200k_base token count of ``text`` (special-token text counts as plain text)."""
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))


def count_pieces(pieces: list[str]) -> int:
    return sum(count_tokens(p) for p in pieces if p)


# --------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------

_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id such as ``call_<24 hex chars>``, cheap to make."""
    return f"{prefix}{_ID_PREFIX}{next(_ID_COUNTER):012x}"


# --------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------


class DirectiveError(ValueError):
    """A malformed or unknown ``[mock ...]`` directive (answered with HTTP 400)."""


@dataclass(slots=True)
class Directives:
    status: int | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_param: str | None = None
    words: int | None = None
    delay_ms: int | None = None
    chunk_delay_ms: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    no_usage: bool = False
    finish: str | None = None
    drop_after: int | None = None
    error_event_after: int | None = None
    hang: bool = False
    refusal: bool = False


NO_DIRECTIVES = Directives()  # shared, never mutated

_INT_KEYS = frozenset(
    {
        "status", "words", "delay_ms", "chunk_delay_ms", "prompt_tokens", "cached_tokens",
        "cache_write_tokens", "drop_after", "error_event_after",
    }
)
_STR_KEYS = frozenset({"error_type", "error_code", "error_param", "finish"})
_FLAG_KEYS = frozenset({"no_usage", "hang", "refusal"})
DIRECTIVE_NAMES = tuple(sorted(_INT_KEYS | _STR_KEYS | _FLAG_KEYS))

_BRACKET = re.compile(r"\[mock\s+([^\]]*)\]")


def parse_directives(text: str | None) -> Directives:
    """Parse every ``[mock key=value]`` / ``[mock flag]`` in ``text``.

    Returns the shared :data:`NO_DIRECTIVES` when the text has none.  Raises
    :class:`DirectiveError` on an unknown key or a bad value.
    """
    if not text or "[mock" not in text:
        return NO_DIRECTIVES
    d = Directives()
    found = False
    for m in _BRACKET.finditer(text):
        for item in m.group(1).split():
            found = True
            key, sep, value = item.partition("=")
            if key in _FLAG_KEYS:
                if sep:
                    raise DirectiveError(f"mock directive {key!r} takes no value")
                setattr(d, key, True)
            elif key in _INT_KEYS:
                try:
                    n = int(value)
                except ValueError:
                    raise DirectiveError(f"mock directive {key!r} needs an integer, got {value!r}") from None
                if n < 0 or (key == "status" and not 100 <= n <= 599):
                    raise DirectiveError(f"mock directive {key}={value} is out of range")
                setattr(d, key, n)
            elif key in _STR_KEYS:
                if not value:
                    raise DirectiveError(f"mock directive {key!r} needs a value")
                setattr(d, key, value)
            else:
                raise DirectiveError(
                    f"unknown mock directive {key!r}; known: {', '.join(DIRECTIVE_NAMES)}"
                )
    return d if found else NO_DIRECTIVES


# --------------------------------------------------------------------------------------
# Tool-call arguments from a JSON schema
# --------------------------------------------------------------------------------------


def _value_for(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return TOOL_STRING_VALUE
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "string" or t is None:
        return TOOL_STRING_VALUE
    if t in ("number", "integer"):
        return 1
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        return build_arguments(schema)
    if t == "null":
        return None
    return TOOL_STRING_VALUE


def build_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a tool call: every *required* property gets a value by type.

    string -> "Tokyo", number/integer -> 1, boolean -> true, array -> [],
    object -> built recursively; a property with an ``enum`` gets its first value.
    """
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    required = schema.get("required")
    if not isinstance(props, dict) or not isinstance(required, list):
        return {}
    return {name: _value_for(props.get(name)) for name in required if isinstance(name, str)}


def split_arguments(args: str, size: int = 12) -> list[str]:
    """Split a JSON arguments string into 2+ pieces for streaming."""
    if len(args) <= size:
        half = max(1, len(args) // 2)
        return [args[:half], args[half:]]
    return [args[i : i + size] for i in range(0, len(args), size)]


# --------------------------------------------------------------------------------------
# The reply plan
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON
    input: dict[str, Any]


@dataclass(slots=True)
class Plan:
    """What to answer, independent of the wire format.

    ``finish`` is neutral: "stop" | "length" | "tool" | "content_filter" | "refusal"
    (or any other value given with ``[mock finish=...]``, passed through).
    """

    model: str
    tokens: tuple[str, ...]          # text tokens (empty for a tool call)
    tool_call: ToolCall | None
    thinking: tuple[str, ...]        # thinking tokens (Anthropic only)
    finish: str
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    usage: bool
    directives: Directives


def make_plan(
    *,
    model: str,
    directives: Directives,
    default_words: int,
    cap: int | None,
    tool: tuple[str, Any] | None,
    after_tool_result: bool,
    thinking: bool,
    prompt_tokens: Any,
) -> Plan:
    """Build the reply. ``prompt_tokens`` is a zero-argument callable, only called
    when ``[mock prompt_tokens=N]`` is absent (so benchmarks skip the tokenizer)."""
    d = directives
    n_prompt = d.prompt_tokens if d.prompt_tokens is not None else prompt_tokens()
    think = THINKING_TOKENS if thinking else ()
    if tool is not None:
        name, schema = tool
        args = build_arguments(schema)
        args_json = orjson.dumps(args).decode()
        call = ToolCall(new_id("call_"), name, args_json, args)
        completion = len(think) + count_tokens(name) + count_tokens(args_json)
        finish = "tool"
        tokens: tuple[str, ...] = ()
    else:
        call = None
        n_words = d.words if d.words is not None else default_words
        tokens = reply_words(n_words)
        if after_tool_result:
            tokens = TOOL_RESULT_PREFIX + tokens
        finish = "stop"
        if cap is not None:
            room = max(0, cap - len(think))
            if len(tokens) > room:
                tokens = tokens[:room]
                finish = "length"
        completion = len(think) + len(tokens)
    if d.refusal:
        finish = "refusal"
    if d.finish is not None:
        finish = d.finish
    cached = d.cached_tokens or 0
    return Plan(
        model=model,
        tokens=tokens,
        tool_call=call,
        thinking=think,
        finish=finish,
        prompt_tokens=n_prompt,
        cached_tokens=cached,
        cache_write_tokens=d.cache_write_tokens or 0,
        completion_tokens=completion,
        usage=not d.no_usage,
        directives=d,
    )


@dataclass(slots=True)
class StreamScript:
    """A stream as write units. ``content`` units are the ones counted by
    ``drop_after`` / ``error_event_after``; ``head`` goes first, ``tail`` last."""

    head: bytes
    content: list[bytes]
    tail: bytes
    error_event: bytes  # the in-stream error event used by error_event_after
    final: Any = None  # the finished object the stream describes (Responses: stored when the stream ends)


@dataclass(slots=True)
class RequestInfo:
    """What a format module reads from a request body (format-neutral)."""

    model: str
    stream: bool
    cap: int | None                  # output-token cap, None = none
    tool: tuple[str, Any] | None     # (name, JSON schema) to call, None = answer text
    after_tool_result: bool          # the last message is a tool result
    thinking: bool                   # emit a thinking block (Anthropic)
    directive_text: str              # text of the last user message
