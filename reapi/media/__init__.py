"""Task output files: where they are stored, how they are copied in, served and expired.

A floor under the tasks wing: it imports only the standard library, aiohttp, boto3 (only when
an S3 store is opened), reapi.store.db (to find the SQLite file's directory) and
reapi.webhooks.target (the one rule for which addresses are private, lazily); it knows
nothing of tasks, money or the tables. Outputs are duck-typed (reapi.tasks.providers.base.Output).

- `open_store(settings)`: a local directory (REAPI_MEDIA_DIR, default `media/` beside the SQLite
  database, or `./media` with PostgreSQL; directories 0700, files 0600) or an S3-compatible
  bucket (REAPI_MEDIA_S3_URL) — reapi.media.local / reapi.media.s3;
- `save_outputs(...)`: copy a task's outputs in, sniffing and checking every file (reapi.media.save);
- `media_app(store)`: GET /media/tasks/{id}/{n}.{ext} (reapi.media.serve);
- `delete_expired(store, task_ids)`: delete the files of tasks past REAPI_MEDIA_RETENTION_HOURS;
  the caller (the tasks worker) picks the tasks: `expires_at_ms` says when a task's files go.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol

from reapi.media.keys import task_prefix
from reapi.media.save import MediaError, SavedFile, save_outputs, saved_json
from reapi.media.serve import lazy_media_app, media_app
from reapi.media.sniff import sniff

__all__ = ["MediaStore", "MediaError", "SavedFile", "open_store", "save_outputs", "saved_json", "media_app",
           "lazy_media_app", "delete_expired", "expires_at_ms", "media_dir", "sniff"]


class MediaStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get(self, key: str) -> tuple[bytes, str] | None: ...
    async def delete_prefix(self, prefix: str) -> int: ...


def media_dir(settings) -> Path:
    """REAPI_MEDIA_DIR, else `media` beside the SQLite database file, else ./media."""
    if settings.media_dir:
        return Path(settings.media_dir)
    from reapi.store.db import is_sqlite, sqlite_path

    if is_sqlite(settings.database_url):
        path = sqlite_path(settings.database_url)
        if path and path != ":memory:" and not path.startswith("file:"):
            return Path(path).resolve().parent / "media"
    return Path("media")


def open_store(settings) -> MediaStore:
    """The S3 bucket of REAPI_MEDIA_S3_URL when set, else the local directory."""
    if settings.media_s3_url:
        from reapi.media.s3 import S3Store

        return S3Store(settings.media_s3_url, timeout_s=settings.media_fetch_timeout_s)
    from reapi.media.local import LocalStore

    return LocalStore(media_dir(settings))


def expires_at_ms(completed_at_ms: int, retention_hours: int) -> int:
    """When the files of a task completed at `completed_at_ms` are deleted."""
    return completed_at_ms + retention_hours * 3_600_000


async def delete_expired(store: MediaStore, task_ids: Iterable[str]) -> int:
    """Delete every file of these tasks; the number of files deleted."""
    n = 0
    for task_id in task_ids:
        n += await store.delete_prefix(task_prefix(task_id))
    return n
