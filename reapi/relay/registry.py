"""The adapter registry: channel type -> its Adapter (reapi.relay.base)."""
from __future__ import annotations

from reapi.relay.anthropic import ADAPTER as ANTHROPIC
from reapi.relay.base import Adapter
from reapi.relay.openai import ADAPTER as OPENAI

ADAPTERS: dict[str, Adapter] = {"openai": OPENAI, "anthropic": ANTHROPIC}


def adapter_for(channel_type: str) -> Adapter:
    """The adapter of a channel type (KeyError for a type no adapter serves)."""
    return ADAPTERS[channel_type]
