"""The `anthropic` channel type: Anthropic Messages upstreams behind the OpenAI format, one module a concern
(the shape of one-api/new-api's relay/channel/<provider>/): request (OpenAI request -> Anthropic payload),
usage (usage and finish reasons), errors (Anthropic errors -> the client's, scrubbed), stream (SSE events
-> OpenAI chunks), adapter (the Adapter, ADAPTER). The user-facing rules (which parameters are honoured,
rejected or ignored, thinking budgets, error mapping) are in docs/anthropic.md. Everything here is a pure
transformation (reapi.relay.base): no I/O. May import reapi.relay.base/scrub/usage/openai, reapi.catalog,
reapi.errors; nothing above reapi.relay.
"""
from reapi.relay.anthropic.adapter import ADAPTER, AnthropicAdapter
from reapi.relay.anthropic.errors import error_from_anthropic
from reapi.relay.anthropic.request import (ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS, HONOURED_PARAMS, IGNORED_PARAMS,
                                           MIN_THINKING_BUDGET, THINKING_BUDGETS, UNSUPPORTED_PARAMS,
                                           build_payload, convert_messages, count_tokens_url, thinking_budget,
                                           upstream_url)
from reapi.relay.anthropic.stream import AnthropicStreamConverter
from reapi.relay.anthropic.usage import finish_reason, openai_usage, usage_from_anthropic

__all__ = ["ADAPTER", "ANTHROPIC_VERSION", "AnthropicAdapter", "AnthropicStreamConverter", "DEFAULT_MAX_TOKENS",
           "HONOURED_PARAMS", "IGNORED_PARAMS", "MIN_THINKING_BUDGET", "THINKING_BUDGETS", "UNSUPPORTED_PARAMS",
           "build_payload", "convert_messages", "count_tokens_url", "error_from_anthropic", "finish_reason",
           "openai_usage",
           "thinking_budget", "upstream_url", "usage_from_anthropic"]
