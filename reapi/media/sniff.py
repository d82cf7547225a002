"""The real type of a file, from its first bytes (never from a declared content type or a name).

Only the formats reapi stores are known; anything else is None and is refused by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["image", "video", "audio"]


@dataclass(frozen=True, slots=True)
class FileType:
    ext: str
    content_type: str
    category: Category


PNG = FileType("png", "image/png", "image")
JPEG = FileType("jpg", "image/jpeg", "image")
WEBP = FileType("webp", "image/webp", "image")
WAV = FileType("wav", "audio/wav", "audio")
MP3 = FileType("mp3", "audio/mpeg", "audio")
M4A = FileType("m4a", "audio/mp4", "audio")
MP4 = FileType("mp4", "video/mp4", "video")
WEBM = FileType("webm", "video/webm", "video")

# extension -> type: what /media/... serves, by the name the file was stored under
BY_EXT: dict[str, FileType] = {t.ext: t for t in (PNG, JPEG, WEBP, WAV, MP3, M4A, MP4, WEBM)}
_AUDIO_BRANDS = (b"M4A ", b"M4B ")


def _mp3_frame(b: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a version other than 'reserved', layer III,
    a bitrate index neither 0 ('free') nor 15 ('bad'), a sampling rate index other than 3."""
    if len(b) < 4 or b[0] != 0xFF or (b[1] & 0xE0) != 0xE0:
        return False
    version, layer = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    bitrate, rate = b[2] >> 4, (b[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def sniff(data: bytes) -> FileType | None:
    """The stored type `data` is, or None when it is none of them."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"ID3") or _mp3_frame(head):
        return MP3
    if head[4:8] == b"ftyp":
        return M4A if head[8:12] in _AUDIO_BRANDS else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head:
        return WEBM
    return None
