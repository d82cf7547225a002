"""Copy a task's outputs into reapi's own storage: `save_outputs`.

An output is either bytes (an upstream's base64 answer, decoded by its provider) or a URL to
download. Downloads: http/https only, no redirect followed, a 200 answer only, at most
`max_bytes` read (a larger declared or actual body is refused without reading the rest), the
whole download within `timeout_s`. The real type is sniffed from the bytes and must be one
reapi stores (reapi.media.sniff) and of the kind the output claims (an image for "image" and
"last_frame", a video for "video", audio for "audio"); the declared content type is ignored.
With allow_private=False, URLs whose host resolves to a private, loopback or link-local
address are refused too, but for trusted_hosts (the channel's own). Anything refused raises
MediaError, whose message names no URL, host or header (it may reach a client as a task's
error); files already saved for the task are then deleted.
"""
from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

import aiohttp

from reapi.media.keys import file_key, task_prefix
from reapi.media.sniff import FileType, sniff

MAX_FILES = 32
_KIND_CATEGORY = {"image": "image", "last_frame": "image", "video": "video", "audio": "audio"}


class MediaError(ValueError):
    """An output that was not stored; the message is safe to show."""


class OutputLike(Protocol):  # reapi.tasks.providers.base.Output (media does not import the tasks wing)
    url: str | None
    data: bytes | None
    content_type: str | None
    kind: str


class Store(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def delete_prefix(self, prefix: str) -> int: ...


@dataclass(frozen=True, slots=True)
class SavedFile:
    kind: str  # image | video | audio | last_frame
    url: str  # public_base + "/media/" + key
    key: str  # tasks/{task_id}/{n}.{ext}
    content_type: str
    size: int


def check_download_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > 8192:
        raise MediaError("an output URL is not a usable http(s) URL")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (a port out of range raises here)
    except ValueError:
        raise MediaError("an output URL is not a usable http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " for c in url):
        raise MediaError("an output URL is not a usable http(s) URL")
    return url


def check_address(url: str, trusted: frozenset[str]) -> None:
    """An IP-literal host must be public unless trusted (names are judged by PublicResolver)."""
    from reapi.webhooks.target import public_address

    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if host in ("localhost",) or host.endswith(".localhost"):
            ip = ipaddress.ip_address("127.0.0.1")
        else:
            return
    if host not in trusted and not public_address(ip):
        raise MediaError("an output URL points to a private, loopback or link-local address")


async def download(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout_s: float,
                   trusted: frozenset[str] | None = None) -> bytes:
    """The body of a 200 answer to GET url, at most max_bytes, within timeout_s; MediaError else.
    With `trusted` (a set of host names), private addresses are refused but for those hosts."""
    check_download_url(url)
    if trusted is not None:
        check_address(url, trusted)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
    try:
        async with session.get(url, allow_redirects=False, timeout=timeout) as resp:
            if resp.status != 200:
                raise MediaError(f"an output download answered HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MediaError(f"an output is larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaError(f"an output is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except MediaError:
        raise
    except asyncio.TimeoutError:
        raise MediaError(f"an output download took longer than {timeout_s:g} s") from None
    except aiohttp.ClientConnectorError as e:
        from reapi.webhooks.target import PrivateAddress

        if isinstance(e.os_error, PrivateAddress):
            raise MediaError("an output URL points to a private, loopback or link-local address") from None
        raise MediaError(f"an output download failed ({type(e).__name__})") from None
    except (aiohttp.ClientError, ValueError, OSError) as e:
        raise MediaError(f"an output download failed ({type(e).__name__})") from None


def check_type(data: bytes, kind: str) -> FileType:
    ft = sniff(data)
    if ft is None:
        raise MediaError("an output is not an image, audio or video file of a known type")
    if _KIND_CATEGORY.get(kind) != ft.category:
        raise MediaError(f"an output meant as {kind} is {ft.category} ({ft.ext})")
    return ft


async def save_outputs(store: Store, session: aiohttp.ClientSession, task_id: str, outputs: Sequence[OutputLike],
                       *, public_base: str, max_bytes: int, timeout_s: float = 120, allow_private: bool = True,
                       trusted_hosts: Iterable[str] = ()) -> list[SavedFile]:
    """Store every output at tasks/{task_id}/{n}.{ext} (n = 0, 1, ...) and say where it is served.

    allow_private=False: downloads go through a session of their own whose resolver refuses
    private, loopback and link-local addresses (reapi.webhooks.target.PublicResolver; IP literals
    are checked before), except for `trusted_hosts` (the channel's own host): an upstream cannot
    make reapi fetch and republish files from its internal network."""
    if len(outputs) > MAX_FILES:
        raise MediaError(f"a task may have at most {MAX_FILES} output files")
    if allow_private:
        return await _save(store, session, task_id, outputs, public_base, max_bytes, timeout_s, None)
    from reapi.webhooks.target import PublicResolver

    trusted = frozenset(h.lower().rstrip(".") for h in trusted_hosts)
    guarded = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=PublicResolver(False, trusted=trusted),
                                                                   use_dns_cache=False),
                                    cookie_jar=aiohttp.DummyCookieJar())
    try:
        return await _save(store, guarded, task_id, outputs, public_base, max_bytes, timeout_s, trusted)
    finally:
        await guarded.close()


async def _save(store: Store, session: aiohttp.ClientSession, task_id: str, outputs: Sequence[OutputLike],
                public_base: str, max_bytes: int, timeout_s: float, trusted: frozenset[str] | None) -> list[SavedFile]:
    prefix = task_prefix(task_id)
    base = public_base.rstrip("/")
    saved: list[SavedFile] = []
    try:
        for n, out in enumerate(outputs):
            if out.data is not None:
                if not isinstance(out.data, bytes):
                    raise MediaError("an output's data is not bytes")
                if len(out.data) > max_bytes:
                    raise MediaError(f"an output is larger than {max_bytes} bytes")
                data = out.data
            elif out.url is not None:
                data = await download(session, out.url, max_bytes=max_bytes, timeout_s=timeout_s, trusted=trusted)
            else:
                raise MediaError("an output has neither a URL nor data")
            ft = check_type(data, out.kind)
            key = file_key(task_id, n, ft.ext)
            await store.put(key, data, ft.content_type)
            saved.append(SavedFile(kind=out.kind, url=f"{base}/media/{key}", key=key,
                                   content_type=ft.content_type, size=len(data)))
    except BaseException:
        if saved:
            try:
                await store.delete_prefix(prefix)
            except Exception:  # the retention sweep deletes them later  # noqa: BLE001
                pass
        raise
    return saved


def saved_json(files: Sequence[SavedFile]) -> list[dict[str, Any]]:
    return [{"kind": f.kind, "url": f.url, "content_type": f.content_type, "size": f.size} for f in files]
