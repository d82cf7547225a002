"""Keep upstream secrets out of anything a client sees."""
from __future__ import annotations

from reapi.catalog import Channel


def scrub(message: str, channel: Channel) -> str:
    for secret in (channel.api_key, channel.base_url):
        if secret and secret in message:
            message = message.replace(secret, "[redacted]")
    return message
