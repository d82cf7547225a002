"""Token counts reported by an upstream, checked before billing trusts them (README "Billing").

The rule, in one place for both adapters and /v1/messages: every count must be an int (not a bool,
float or string) in [0, 2**31-1], and so must the prompt total it adds up to; the cache-read and
cache-write parts are clamped to at most the prompt. A report failing that is malformed: it is
discarded with a warning (naming the field, never its value) and the call is billed on the gateway's
own count, exactly as when the upstream reports no usage. A report without its prompt or completion
count (`{}`, only total_tokens, ...) is "no usage" too, without a warning.
"""
from __future__ import annotations

import logging

from reapi.relay.base import Usage

MAX_COUNT = 2**31 - 1  # the store's INTEGER columns

log = logging.getLogger("reapi.relay")


class _Malformed(Exception):
    pass


def _count(value: object, field: str) -> int:
    """A reported count; None (absent or null) is 0."""
    if value is None:
        return 0
    if type(value) is not int:
        raise _Malformed(f"{field} is not an integer")
    if not 0 <= value <= MAX_COUNT:
        raise _Malformed(f"{field} is out of range")
    return value


def checked_usage(prompt: object, completion: object, cached: object = None, cache_write: object = None, *,
                  cache_in_prompt: bool = True, fmt: str = "openai") -> Usage | None:
    """The one gate for upstream token counts: a Usage billing may charge, or None (bill our own count).

    prompt / completion None: no usage. cache_in_prompt: `prompt` already includes the cache parts
    (OpenAI's prompt_tokens); otherwise they are added to it (Anthropic's input_tokens excludes them)."""
    if prompt is None or completion is None:
        return None
    try:
        p = _count(prompt, "prompt")
        c = _count(completion, "completion")
        read = _count(cached, "cached")
        write = _count(cache_write, "cache_write")
        if not cache_in_prompt:
            p += read + write
            if p > MAX_COUNT:
                raise _Malformed("the prompt total is out of range")
    except _Malformed as exc:
        _malformed(fmt, str(exc))
        return None
    read = min(read, p)
    write = min(write, p - read)
    return Usage(prompt_tokens=p, completion_tokens=c, cached_tokens=read, cache_write_tokens=write)


def _malformed(fmt: str, what: str) -> None:
    log.warning("upstream (%s format) reported malformed usage: %s; billed on the gateway's own count", fmt, what)


def openai_usage(u: object) -> Usage | None:
    """OpenAI's `usage` (prompt_tokens incl. prompt_tokens_details.cached_tokens, completion_tokens)."""
    if u is None:
        return None
    if not isinstance(u, dict):
        _malformed("openai", "usage is not an object")
        return None
    details = u.get("prompt_tokens_details")
    if details is not None and not isinstance(details, dict):
        _malformed("openai", "prompt_tokens_details is not an object")
        return None
    return checked_usage(u.get("prompt_tokens"), u.get("completion_tokens"),
                         details.get("cached_tokens") if details else None)


def anthropic_usage(u: object, *, prompt_only: bool = False) -> Usage | None:
    """Anthropic's `usage` (a message's, or message_start's merged with message_delta's):
    prompt = input_tokens + cache_read_input_tokens + cache_creation_input_tokens, completion =
    output_tokens. prompt_only: the prompt side of message_start (completion_tokens 0)."""
    if u is None:
        return None
    if not isinstance(u, dict):
        _malformed("anthropic", "usage is not an object")
        return None
    completion = 0 if prompt_only else u.get("output_tokens")
    return checked_usage(u.get("input_tokens"), completion, u.get("cache_read_input_tokens"),
                         u.get("cache_creation_input_tokens"), cache_in_prompt=False, fmt="anthropic")


def anthropic_stream_usage(started: dict, delta_usage: object) -> Usage | None:
    """The usage of an Anthropic stream at message_delta: message_start's usage (`started`) merged with
    message_delta's (cumulative; its nulls ignored). The completion count must come from message_delta:
    one without usage or without output_tokens is no usage (message_start's output_tokens is a placeholder)."""
    if not isinstance(delta_usage, dict):
        return anthropic_usage(delta_usage)  # None, or malformed (logged)
    if delta_usage.get("output_tokens") is None:
        return None
    return anthropic_usage({**started, **{k: v for k, v in delta_usage.items() if v is not None}})


def responses_usage(u: object) -> Usage | None:
    """The Responses API's `usage`: input_tokens (incl. input_tokens_details.cached_tokens) and output_tokens
    (incl. output_tokens_details.reasoning_tokens, billed as output, as OpenAI bills them). The reasoning
    count must be a count too, and at most the output count; the details, when present, must be objects."""
    if u is None:
        return None
    if not isinstance(u, dict):
        _malformed("responses", "usage is not an object")
        return None
    details = u.get("input_tokens_details")
    out_details = u.get("output_tokens_details")
    for name, d in (("input_tokens_details", details), ("output_tokens_details", out_details)):
        if d is not None and not isinstance(d, dict):
            _malformed("responses", f"{name} is not an object")
            return None
    usage = checked_usage(u.get("input_tokens"), u.get("output_tokens"),
                          details.get("cached_tokens") if details else None, fmt="responses")
    if usage is not None and out_details:
        try:
            reasoning = _count(out_details.get("reasoning_tokens"), "reasoning")
        except _Malformed as exc:
            _malformed("responses", str(exc))
            return None
        if reasoning > usage.completion_tokens:
            _malformed("responses", "reasoning is more than output")
            return None
    return usage
