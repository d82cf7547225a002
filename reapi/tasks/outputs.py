"""Where a finished task's output files go, and the `output` object a poll shows.

With reapi.media in the build, every output is copied into reapi's own storage (a local directory
or an S3 bucket) and the task shows reapi's URLs, which outlive the upstream's links. Without it,
the upstream's URLs are shown as they are (data outputs are dropped).
"""
from __future__ import annotations

from typing import Sequence

from reapi.tasks.providers.base import Output

LISTS = {"image": "image_urls", "video": "video_urls", "audio": "audio_urls"}
MAX_OUTPUT_BYTES = 512 << 20  # one output file, downloaded or decoded


def output_object(files: Sequence[tuple[str, str]]) -> dict:
    """(kind, url) pairs -> {"image_urls": [...]} / video_urls / audio_urls, plus last_frame_url."""
    out: dict = {}
    for kind, url in files:
        if kind == "last_frame":
            out["last_frame_url"] = url
        else:
            out.setdefault(LISTS[kind], []).append(url)
    return out


async def save_outputs(gw, task_id: str, outputs: Sequence[Output]) -> dict:
    """Store the outputs of `task_id`; returns its `output` object. Raises on a file that cannot be
    fetched or is not a media file (the worker retries, then fails the task)."""
    try:
        from reapi import media
    except ImportError:
        return output_object([(o.kind, o.url) for o in outputs if o.url is not None])
    store = getattr(gw, "media_store", None)
    if store is None:
        store = gw.media_store = media.open_store(gw.settings)
    saved = await media.save_outputs(store, gw.http, task_id, outputs,
                                     public_base=getattr(gw.settings, "public_url", None) or "",
                                     max_bytes=MAX_OUTPUT_BYTES)
    return output_object([(f.kind, f.url) for f in saved])
