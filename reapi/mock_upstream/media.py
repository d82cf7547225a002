"""Tiny but valid media files for the demo upstream's task answers (and for tests).

Each is built here from its format's rules, not copied: a PNG with correct chunk CRCs and a
zlib-compressed scanline per row, a PCM WAV, MPEG-1 Layer III frames (silence), and an MP4
made of an `ftyp` box, an empty `free` box and an `mdat` box. Deterministic: the same
arguments give the same bytes, so tests can compare them.
"""
from __future__ import annotations

import struct
import zlib

MP3_FRAME_HEADER = b"\xff\xfb\x90\x64"  # MPEG-1 Layer III, no CRC, 128 kbit/s, 44.1 kHz, joint stereo
MP3_FRAME_BYTES = 417  # 144 * 128000 // 44100, no padding


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """An 8-bit RGB PNG of one colour."""
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError("png size out of range")
    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None) then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * height))
            + _chunk(b"IEND", b""))


def wav(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of a quiet square wave."""
    n = max(1, int(seconds * rate))
    samples = b"".join(struct.pack("<h", 1000 if (i // 20) % 2 else -1000) for i in range(n))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp3(frames: int = 4) -> bytes:
    """`frames` MPEG audio frames of silence (all-zero side information and main data)."""
    return (MP3_FRAME_HEADER + bytes(MP3_FRAME_BYTES - 4)) * max(1, frames)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4(payload: bytes = b"reapi mock video") -> bytes:
    """An ISO base media file: ftyp (isom, compatible isom/iso2/mp41), free, mdat."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    return ftyp + _box(b"free", b"") + _box(b"mdat", payload)


FILES = {"png": (png, "image/png"), "wav": (wav, "audio/wav"), "mp3": (mp3, "audio/mpeg"),
         "mp4": (mp4, "video/mp4")}
