"""What an Anthropic answer reports, in the gateway's terms: usage and the finish reason."""
from __future__ import annotations

from reapi.relay.base import Usage
from reapi.relay.usage import anthropic_usage

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "stop")



def usage_from_anthropic(u: object) -> Usage | None:
    """An Anthropic `usage` object (a message's, or message_start's merged with message_delta's) in billing
    terms, or None when it is absent or malformed (see reapi.relay.usage: billed on our own count).

    prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens
    (Anthropic's input_tokens excludes both cache parts; ours counts every input token),
    cached_tokens = the cache read, cache_write_tokens = the cache creation,
    completion_tokens = output_tokens. Missing or null cache fields count as 0."""
    return anthropic_usage(u)


def openai_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
