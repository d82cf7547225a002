"""Keep upstream secrets out of anything a client, the admin API or a log line sees.

`scrub(text, channel)` is applied to every string relayed from an upstream's error (message, param);
`safe_code` allow-lists error types and codes. Replaced by "[redacted]", case-insensitively:
- the channel's key, base URL, netloc and hostname, each also URL-encoded and JSON-escaped
  (`\\/`), and masked forms of the key ("sk-abcd****wxyz", "sk-...wxyz");
- anything shaped like an API key (sk-..., sk-ant-..., a run of 32+ letters and digits with both),
  a URL (scheme://..., also URL-encoded or with escaped slashes), or a masked secret (abcd****wxyz).
The result is at most MAX_TEXT characters.
"""
from __future__ import annotations

import functools
import re
import urllib.parse

from reapi.catalog import Channel

REDACTED = "[redacted]"
MAX_TEXT = 1000

_GENERIC = re.compile(
    r"\bsk-[\w\-*.…]*"  # sk-..., sk-ant-..., and their masked forms
    r"|\b[a-z][a-z0-9+.\-]{1,15}(?::|%3a)(?://|%2f%2f|\\/\\/)[^\s\"'<>]*"  # URLs, plain / encoded / escaped
    r"|[\w\-]*\*{3,}[\w\-]*"  # masked secrets: abcd****wxyz
    r"|\b(?=[A-Za-z_\-]*\d)(?=[0-9_\-]*[A-Za-z])[\w\-]{32,}",  # long opaque tokens: letters and digits
    re.IGNORECASE)
_CODE = re.compile(r"[a-z0-9_.\-]{1,64}")


def _forms(secret: str) -> set[str]:
    """A secret as it may appear in text: itself, URL-encoded, and JSON-escaped."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret),
            secret.replace("/", "\\/"), secret.replace("\\", "\\\\").replace('"', '\\"')}


@functools.lru_cache(maxsize=256)
def _channel_pattern(api_key: str, base_url: str) -> re.Pattern[str] | None:
    secrets: set[str] = set()
    if api_key:
        secrets |= _forms(api_key)
    base = base_url.rstrip("/")
    if base:
        parts = urllib.parse.urlsplit(base)
        for s in (base, base_url, parts.netloc, parts.hostname or "", base.split("://", 1)[-1]):
            if s:
                secrets |= _forms(s)
    alternatives = [re.escape(s) for s in sorted(secrets, key=len, reverse=True) if s]
    if api_key and len(api_key) >= 8:  # masked: a prefix of the key, a mask, its last four characters
        alternatives.append(re.escape(api_key[:3]) + r"[\w\-]*(?:\*{2,}|\.{2,}|…)" + re.escape(api_key[-4:]))
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def scrub(text: object, channel: Channel | None = None, limit: int = MAX_TEXT) -> str:
    """`text` (made a string if it is not one) without the channel's secrets nor anything secret-shaped."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) > 4 * limit:
        text = text[:4 * limit]  # bound the work; what is cut off is never shown
    if channel is not None:
        pattern = _channel_pattern(channel.api_key or "", channel.base_url or "")
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
    text = _GENERIC.sub(REDACTED, text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def safe_code(value: object, channel: Channel | None = None, default: str | None = None) -> str | None:
    """An upstream's error `type` or `code`, kept only if it is a short plain identifier once scrubbed
    (^[a-z0-9_.\\-]{1,64}$); anything else (a number, a list, a long or odd string) becomes `default`."""
    if not isinstance(value, str) or len(value) > 64:
        return default
    value = scrub(value, channel)
    return value if _CODE.fullmatch(value) else default


def safe_param(value: object, channel: Channel | None = None) -> str | None:
    """An upstream's error `param`: a scrubbed string of at most 200 characters, else None."""
    return scrub(value, channel, 200) if isinstance(value, str) and value else None


@functools.lru_cache(maxsize=256)
def _output_secrets(api_key: str, base_url: str) -> tuple[bytes, ...]:
    forms = {api_key, api_key.lower(), api_key.upper()} if len(api_key) >= 8 else set()
    netloc = urllib.parse.urlsplit(base_url).netloc
    if netloc:
        forms |= {netloc, netloc.lower()}
    return tuple(sorted((f.encode() for f in forms if f), key=len, reverse=True))


def redact_output(data: bytes, channel: Channel) -> bytes:
    """What the model produced, relayed as bytes, without the channel's key (as is, lower- or upper-case)
    nor its host[:port]. A few substring scans per chunk, no parsing: this runs on every relayed chunk.
    A secret split across two upstream chunks is not caught (README "Security")."""
    for secret in _output_secrets(channel.api_key or "", channel.base_url or ""):
        if secret in data:
            data = data.replace(secret, b"[redacted]")
    return data
