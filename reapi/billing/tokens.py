"""How many tokens a chat request's prompt holds, and a produced text, offline.

The gateway counts a request's prompt before forwarding it, to size the prepaid
hold, and counts the produced text when a stream ends without a usage report.
The rules per message, part and tool are the constants below; the vocabulary
and the exact text counter live in vocab.py (docs/tokenizer.md says why they are
built as they are). Imports only reapi.billing.vocab and reapi.aio (the counting thread's priority).
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reapi.aio import nice_thread
from reapi.billing import vocab
from reapi.billing.vocab import (O200K_SHA256, TokenizerDataError, count_text, counter_backend, encoding,
                                 load_o200k, warm)


__all__ = [
    "CLAUDE_MARGIN_PERCENT",
    "IMAGE_TOKENS",
    "O200K_SHA256",
    "TokenizerDataError",
    "count_completion",
    "count_prompt",
    "count_prompt_async",
    "count_responses_prompt",
    "count_responses_prompt_async",
    "count_text",
    "counter_backend",
    "encoding",
    "load_o200k",
    "warm",
]


# OpenAI cookbook "How to count tokens with tiktoken" (num_tokens_from_messages,
# gpt-4o / gpt-4 branch): every message costs 3 tokens (<|start|>, role
# separator, <|end|>) on top of the tokens of each of its string values (the
# role included), a `name` costs 1 more, and the reply is primed with
# <|start|>assistant<|message|> = 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# Not in the cookbook: each assistant tool call is rendered with some framing
# around its name and arguments. 3 keeps the hold on the safe side.
TOKENS_PER_TOOL_CALL = 3

# Tools are injected as a TypeScript-like block ("# Tools ... namespace functions
# { ... }") that has framing the JSON lacks. Against prompt_tokens the API
# reported for one system message + one tool (the cases recorded in
# pamelafox/openai-messages-token-helper, tests/functions.py), counting the JSON
# of the functions alone came out 6-20 tokens high for tools with parameters
# but 10 low for a tool without any; adding 12 covers every recorded case.
TOOLS_OVERHEAD_TOKENS = 12

# Fixed allowance per image_url part, whatever its size or detail. OpenAI's tile
# rule (gpt-4o, gpt-4.1, gpt-4.5, o1/o3): fit within 2048x2048, scale down so
# the shortest side is at most 768, then 85 + 170 per 512-px tile (the API
# bills a 1x1 image 85 + 170, so small images are not scaled up). A square
# 2048x2048 image is 768x768 = 4 tiles = 765 tokens; after those steps no image
# exceeds 768x2048 = 2x4 tiles = 85 + 8*170 = 1445, so none can cost more on
# those models (detail "low" is 85). It also covers Claude's
# images (width*height/750, about 1600 at most after Claude's own downscaling;
# the Claude margin raises 1445 to 1879). Known exception: gpt-4o-mini bills
# images at 2833 + 5667 per tile (the same dollars as gpt-4o at its lower rate),
# and gpt-4.1-mini/nano use 32-px patches times 1.62/2.46 (up to ~2500/3800):
# the hold for an image on those models is short and settlement absorbs it.
IMAGE_TOKENS = 1445

# input_audio parts: user audio costs 1 token per 100 ms (OpenAI "Managing
# costs" guide for realtime/audio models), i.e. 10 tokens/s. The most bytes-
# efficient encoding accepted (mp3 at its 8 kbps minimum = 1000 B/s) gives 100
# raw bytes = 133 base64 characters per token; counting 1 token per 100 base64
# characters is therefore an upper bound for any wav/mp3 (pcm16 wav is >10x
# below it).
AUDIO_B64_CHARS_PER_TOKEN = 100

# file parts (PDF): OpenAI gives the model each page's extracted text plus an
# image of the page (a letter-size page is 4 tiles = 765 tokens on gpt-4o). A
# compact text PDF (~4 KB per page, ~650 text tokens) costs ~1400 tokens per
# ~5.3 K base64 characters, about 1 token per 3.8 characters; counting 1 token
# per 2 base64 characters holds ~2x that. The length cannot bound the page
# count, so a PDF of nearly empty pages can still exceed it (settlement
# absorbs the difference), while font/image-heavy PDFs are held far above cost.
FILE_B64_CHARS_PER_TOKEN = 2
# A file referenced only by file_id: its size is unknown here. Allowance of
# about 5 dense pages (5 x ~2000 tokens).
FILE_REF_TOKENS = 10_000

# Claude's tokenizer is not public. A published comparison of the same inputs
# through Claude 3.5 Sonnet and GPT-4o (o200k) ("Hidden costs in AI deployment:
# why Claude models may be 20-30% more expensive than GPT in enterprise
# settings", May 2025, widely syndicated) found Claude's counts ~16% higher on English
# articles, ~21% on math and ~30% on Python code. 30% covers the worst measured
# domain, so the hold errs high on prose rather than low on code. Other Claude
# generations may differ; settlement uses the usage Anthropic reports.
CLAUDE_MARGIN_PERCENT = 30

# count_prompt_async moves counting to a worker thread above this many
# characters of text to tokenize; below it counting takes a few ms at most.
ASYNC_THRESHOLD_CHARS = 64 * 1024


_FAMILIES_WITH_MARGIN = frozenset({"claude", "anthropic"})


def count_completion(text: str) -> int:
    """o200k_base tokens of text a model produced (stream ended without usage)."""
    return count_text(text)


# --- counting a chat request -----------------------------------------------------


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # e.g. circular or non-str keys
        return str(value)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Tally:
    """Texts to tokenize plus fixed token amounts, collected before counting."""

    __slots__ = ("texts", "fixed")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = 0

    def text(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self.texts.append(value)
        elif value is not None:
            self.texts.append(_json(value))

    def chars(self) -> int:
        return sum(map(len, self.texts))

    def count(self) -> int:
        return self.fixed + sum(count_text(t) for t in self.texts)


def _tally_part(part: Any, tally: _Tally) -> None:
    if isinstance(part, str):
        tally.text(part)
        return
    if not isinstance(part, dict):
        tally.text(part)
        return
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        tally.text(part["text"])
    elif kind == "refusal" and isinstance(part.get("refusal"), str):
        tally.text(part["refusal"])
    elif kind == "image_url":
        tally.fixed += IMAGE_TOKENS
    elif kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if isinstance(data, str):
            tally.fixed += _ceil_div(len(data), AUDIO_B64_CHARS_PER_TOKEN)
        else:
            tally.text(part)
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, dict):
            tally.text(part)
            return
        data = file.get("file_data")
        if isinstance(data, str) and data:
            tally.fixed += _ceil_div(len(data), FILE_B64_CHARS_PER_TOKEN)
        else:
            tally.fixed += FILE_REF_TOKENS
        tally.text(file.get("filename"))
    else:
        tally.text(part)  # unknown part type: its JSON


def _tally_content(content: Any, tally: _Tally) -> None:
    if isinstance(content, list):
        for part in content:
            _tally_part(part, tally)
    else:
        tally.text(content)


def _tally_call(call: Any, tally: _Tally) -> None:
    tally.fixed += TOKENS_PER_TOOL_CALL
    fn = call.get("function") if isinstance(call, dict) else None
    if isinstance(fn, dict):
        tally.text(fn.get("name"))
        tally.text(fn.get("arguments"))
        rest = {k: v for k, v in call.items() if k not in ("function", "id", "type")}
        if rest:
            tally.text(rest)
    else:
        tally.text(call)  # custom tool calls and anything else: their JSON


def _tally_message(message: Any, tally: _Tally) -> None:
    tally.fixed += TOKENS_PER_MESSAGE
    if not isinstance(message, dict):
        tally.text(message)
        return
    for key, value in message.items():
        if value is None:
            continue
        if key == "content":
            _tally_content(value, tally)
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                _tally_call(call, tally)
        elif key == "function_call" and isinstance(value, dict):  # legacy functions API
            _tally_call({"function": value}, tally)
        else:
            # role, name, tool_call_id, refusal, ...: the cookbook counts every
            # string value; non-strings (e.g. assistant audio {"id": ...}) as JSON.
            tally.text(value)
            if key == "name":
                tally.fixed += TOKENS_PER_NAME


def _tally_body(body: Any) -> _Tally:
    tally = _Tally()
    if not isinstance(body, dict):
        tally.text(body)
        return tally
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            _tally_message(message, tally)
    elif messages is not None:
        tally.text(messages)
    tally.fixed += REPLY_PRIMING_TOKENS

    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        functions = [
            t["function"] if isinstance(t, dict) and t.get("type") == "function" and "function" in t else t
            for t in tools
        ]
        tally.text(_json(functions))
        tally.fixed += TOOLS_OVERHEAD_TOKENS
    elif tools:
        tally.text(tools)
    functions = body.get("functions")  # legacy functions API
    if functions:
        tally.text(_json(functions))
        tally.fixed += TOOLS_OVERHEAD_TOKENS
    for choice_key in ("tool_choice", "function_call"):
        tally.text(body.get(choice_key))  # "auto"/"none" strings or {"function": {...}}

    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tally.text(_json(response_format.get("json_schema", response_format)))
    return tally


def _apply_family(o200k_tokens: int, family: str) -> int:
    if family == "openai":
        return o200k_tokens
    if family in _FAMILIES_WITH_MARGIN:
        return _ceil_div(o200k_tokens * (100 + CLAUDE_MARGIN_PERCENT), 100)
    raise ValueError(f"unknown tokenizer family {family!r}; expected 'openai' or 'claude'")


def count_prompt(body: dict, family: str = "openai") -> int:
    """Input tokens to hold for an already validated OpenAI chat request body.

    Per message: TOKENS_PER_MESSAGE + the tokens of each string value (role,
    content text, name (+TOKENS_PER_NAME), tool_call_id, ...); content parts:
    text counted, image_url IMAGE_TOKENS each, input_audio and file data by
    length (see the constants), unknown parts by their JSON; assistant
    tool_calls: name + arguments + TOKENS_PER_TOOL_CALL each. Plus
    REPLY_PRIMING_TOKENS, the JSON of the tools' function definitions plus
    TOOLS_OVERHEAD_TOKENS, tool_choice, and a json_schema response_format. family "claude" (or
    "anthropic") adds CLAUDE_MARGIN_PERCENT, rounded up. Always an int.
    """
    return _apply_family(_tally_body(body).count(), family)


async def count_prompt_async(body: dict, family: str = "openai") -> int:
    """count_prompt for the event loop: over ASYNC_THRESHOLD_CHARS of text to
    tokenize (or before the vocabulary is loaded) the work runs in a thread."""
    return await _count_async(_tally_body, body, family)


# Large prompts are counted on ONE thread, one after another. The tokenizer holds the GIL while it
# counts a slice (~64K characters, a few ms), so the event loop gets it back between slices; with one
# counting thread per prompt (asyncio.to_thread) ten 1M-token prompts meant ten threads taking turns
# with the loop, which then waited up to ~280 ms for its turn. Serialized, the loop waits one slice.
_counter: ThreadPoolExecutor | None = None
# The counting thread runs at a lower CPU priority (Linux: per-thread nice), so a woken event loop
# takes the core first; at 10 it still gets about a tenth of a core that the loop keeps busy.
COUNTER_NICE = 10


async def _count_async(tally_of, body: Any, family: str) -> int:
    """`tally_of(body)` counted for the event loop: the vocabulary loaded (and a large tally counted)
    on the counting thread, then the family's margin."""
    global _counter
    if not vocab.loaded():
        await asyncio.to_thread(warm)
    tally = tally_of(body)
    if tally.chars() > ASYNC_THRESHOLD_CHARS:
        if _counter is None:
            _counter = ThreadPoolExecutor(1, thread_name_prefix="reapi-tokens", initializer=nice_thread,
                                          initargs=(COUNTER_NICE,))
        return _apply_family(await asyncio.get_running_loop().run_in_executor(_counter, tally.count), family)
    return _apply_family(tally.count(), family)


# --- counting a Responses request ---------------------------------------------------------

def _tally_response_part(part: Any, tally: _Tally) -> None:
    if not isinstance(part, dict):
        tally.text(part)
        return
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text") and isinstance(
            part.get("text"), str):
        tally.text(part["text"])
    elif kind == "refusal" and isinstance(part.get("refusal"), str):
        tally.text(part["refusal"])
    elif kind == "input_image":
        tally.fixed += IMAGE_TOKENS
    elif kind == "input_file":
        data = part.get("file_data")
        if isinstance(data, str) and data:
            tally.fixed += _ceil_div(len(data), FILE_B64_CHARS_PER_TOKEN)
        else:
            tally.fixed += FILE_REF_TOKENS
        tally.text(part.get("filename"))
    elif kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        tally.fixed += _ceil_div(len(data), AUDIO_B64_CHARS_PER_TOKEN) if isinstance(data, str) else 0
    else:
        tally.text(part)  # anything else: its JSON


def _tally_response_item(item: Any, tally: _Tally) -> None:
    tally.fixed += TOKENS_PER_MESSAGE
    if not isinstance(item, dict):
        tally.text(item)
        return
    kind = item.get("type", "message")
    if kind == "message":
        tally.text(item.get("role"))
        _tally_response_content(item.get("content"), tally)
    elif kind in ("function_call", "custom_tool_call"):
        tally.fixed += TOKENS_PER_TOOL_CALL
        for k in ("name", "arguments", "input", "call_id"):
            tally.text(item.get(k))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        tally.text(item.get("call_id"))
        _tally_response_content(item.get("output"), tally)
    elif kind == "reasoning":
        # The summary is text; encrypted_content is the reasoning itself, sealed: counted by its length
        # (base64 of the tokens and more, so never less than they are).
        for part in item.get("summary") or ():
            _tally_response_part(part, tally)
        enc = item.get("encrypted_content")
        if isinstance(enc, str):
            tally.fixed += _ceil_div(len(enc), 4)
    elif kind == "item_reference":
        pass  # an item stored upstream: unknown here (settlement bills what the upstream counts)
    else:
        tally.text({k: v for k, v in item.items() if k != "id"})


def _tally_response_content(content: Any, tally: _Tally) -> None:
    if isinstance(content, list):
        for part in content:
            _tally_response_part(part, tally)
    else:
        tally.text(content)


def _tally_responses_body(body: Any) -> _Tally:
    tally = _Tally()
    if not isinstance(body, dict):
        tally.text(body)
        return tally
    if body.get("instructions") is not None:
        tally.fixed += TOKENS_PER_MESSAGE
        tally.text(body.get("instructions"))
    inp = body.get("input")
    if isinstance(inp, list):
        for item in inp:
            _tally_response_item(item, tally)
    elif inp is not None:
        tally.fixed += TOKENS_PER_MESSAGE
        tally.text(inp)
    tally.fixed += REPLY_PRIMING_TOKENS
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        tally.text(_json(tools))
        tally.fixed += TOOLS_OVERHEAD_TOKENS
    tally.text(body.get("tool_choice"))
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        tally.text(_json(fmt))
    if body.get("prompt") is not None:
        tally.text(body.get("prompt"))  # a stored prompt's variables (its template is upstream's)
    return tally


def count_responses_prompt(body: dict) -> int:
    """Input tokens to hold for an already validated Responses request body (OpenAI's tokenizer).

    `instructions` and a string `input` count as one message each (TOKENS_PER_MESSAGE + their text);
    each input item TOKENS_PER_MESSAGE plus: a message its role and content (input_text/output_text
    text, input_image IMAGE_TOKENS, input_file and input_audio by length, as for chat), a function
    call its name, arguments and call id (+TOKENS_PER_TOOL_CALL), a call output its text, a reasoning
    item its summary and its encrypted content at one token per 4 characters, an item_reference
    nothing, anything else its JSON. Plus REPLY_PRIMING_TOKENS, the JSON of the tools plus
    TOOLS_OVERHEAD_TOKENS, tool_choice, a json_schema text format and a prompt's variables. What
    `previous_response_id` or `conversation` adds is stored upstream and unknown here: the hold is then
    short and settlement bills the upstream's count (README "Responses API")."""
    return _tally_responses_body(body).count()


async def count_responses_prompt_async(body: dict, family: str = "openai") -> int:
    """count_responses_prompt for the event loop (a thread above ASYNC_THRESHOLD_CHARS, as for chat);
    family "claude" adds the Claude margin, as count_prompt does."""
    return await _count_async(_tally_responses_body, body, family)
