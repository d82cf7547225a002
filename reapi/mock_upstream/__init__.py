"""Offline mock LLM upstream speaking OpenAI Chat Completions, OpenAI Responses and Anthropic Messages.

Used by tests, the demo and benchmarks so the gateway runs end to end with no
internet and no provider key.  See :mod:`reapi.mock_upstream.directives` for the
``[mock ...]`` directives and the token-counting rules.
"""
from .directives import VOCAB, Directives, parse_directives
from .server import MockConfig, bound_port, create_app, run, start_mock

__all__ = [
    "MockConfig",
    "create_app",
    "start_mock",
    "bound_port",
    "run",
    "parse_directives",
    "Directives",
    "VOCAB",
]
