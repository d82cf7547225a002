"""Where a finished task's output files go, and the `output` object a poll shows.

Every output is copied into reapi's own storage (reapi.media: a local directory or an S3 bucket)
and the task shows reapi's URLs, which outlive the upstream's links; an upstream URL is never shown.
"""
from __future__ import annotations

from typing import Sequence

from reapi.tasks.providers.base import Output

LISTS = {"image": "image_urls", "video": "video_urls", "audio": "audio_urls"}


def output_object(files: Sequence[tuple[str, str]]) -> dict:
    """(kind, url) pairs -> {"image_urls": [...]} / video_urls / audio_urls, plus last_frame_url."""
    out: dict = {}
    for kind, url in files:
        if kind == "last_frame":
            out["last_frame_url"] = url
        else:
            out.setdefault(LISTS[kind], []).append(url)
    return out


async def save_outputs(gw, task_id: str, outputs: Sequence[Output], channel_host: str | None = None) -> dict:
    """Copy the outputs of `task_id` into reapi's storage; returns its `output` object with paths
    (/media/tasks/{id}/{n}.{ext}; a poll prefixes its origin). Raises on a file that cannot be
    fetched or is not a media file (the worker retries, then fails the task). Downloads reach only
    public addresses, and the channel's own host (`channel_host`, the operator's): an upstream
    cannot make reapi fetch and republish files from its internal network."""
    from reapi import media

    store = gw.media_store
    if store is None:
        store = gw.media_store = media.open_store(gw.settings)
    s = gw.settings
    saved = await media.save_outputs(store, gw.http, task_id, outputs, public_base="", max_bytes=s.media_max_bytes,
                                     timeout_s=s.media_fetch_timeout_s, allow_private=False,
                                     trusted_hosts=(channel_host,) if channel_host else ())
    return output_object([(f.kind, f.url) for f in saved])


def with_origin(output: dict | None, origin: str) -> dict | None:
    """The stored output object with `origin` before each path."""
    if not output or not origin:
        return output
    base = origin.rstrip("/")
    fix = lambda u: base + u if isinstance(u, str) and u.startswith("/") else u  # noqa: E731
    return {k: [fix(u) for u in v] if isinstance(v, list) else fix(v) for k, v in output.items()}
