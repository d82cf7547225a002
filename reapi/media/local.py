"""Media files in a local directory (REAPI_MEDIA_DIR): directories 0700, files 0600.

A file is written to a temporary name beside its final one and renamed into place, so a reader
never sees half a file. Blocking file work runs in a thread, off the event loop.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from reapi.media.keys import check_key, check_prefix
from reapi.media.sniff import BY_EXT


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key

    def _mkdirs(self, d: Path) -> None:
        missing = []
        while not d.exists():
            missing.append(d)
            d = d.parent
        for p in reversed(missing):
            try:
                p.mkdir(mode=0o700)
            except FileExistsError:
                pass

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._mkdirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _get(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return data, BY_EXT[path.suffix[1:]].content_type

    def _delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        d = self.root / prefix
        if not d.is_dir():
            return 0
        n = sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        shutil.rmtree(d, ignore_errors=True)
        return n

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> tuple[bytes, str] | None:
        return await asyncio.to_thread(self._get, key)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)
