"""The o200k_base vocabulary, loaded offline and sha256-checked, and exact text counting.

The ranks come from the file the bpe-openai wheel ships; the counting backend is
bpe-openai's Rust tokenizer, checked at load against the verified ids, with
tiktoken as the fallback. docs/tokenizer.md gives the sources, the hash and the
measurements behind these choices. Imports nothing of reapi's.
"""
from __future__ import annotations

import binascii
import gzip
import hashlib
import logging
import os
import re
import threading
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import tiktoken
from tiktoken_ext import openai_public as _openai_public

log = logging.getLogger(__name__)

# sha256 of the *decompressed* o200k_base.tiktoken: tiktoken_ext/openai_public.py,
# o200k_base(), expected_hash= (tiktoken 0.14.0). test_tokens checks that the
# installed tiktoken still expects this value and that the shipped file has it.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_O200K_N_RANKS = 199_998  # ranks 0..199997; 199999 and 200018 are the special tokens

_DATA_PACKAGE = "bpe_openai.data"
_DATA_FILE = "o200k_base.tiktoken.gz"


# Target size of the slices handed to the counting backend (see docs/tokenizer.md).
_CHUNK_CHARS = 64 * 1024


class TokenizerDataError(RuntimeError):
    """The o200k_base vocabulary could not be loaded or failed its sha256 check."""


# --- loading ---------------------------------------------------------------------


def _shipped_bytes() -> bytes:
    try:
        return resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE).read_bytes()
    except (ImportError, OSError) as exc:
        raise TokenizerDataError(
            f"o200k_base vocabulary not found: expected {_DATA_FILE} as package data of "
            f"{_DATA_PACKAGE} (installed by the bpe-openai wheel)"
        ) from exc


def _read_source(source: bytes | str | os.PathLike[str] | None) -> tuple[bytes, str]:
    if source is None:
        return _shipped_bytes(), f"{_DATA_PACKAGE}/{_DATA_FILE}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    try:
        with open(source, "rb") as f:
            return f.read(), os.fspath(source)
    except OSError as exc:
        raise TokenizerDataError(f"cannot read o200k_base vocabulary from {source!r}: {exc}") from exc


def _verified_ranks(source: bytes | str | os.PathLike[str] | None) -> dict[bytes, int]:
    raw, origin = _read_source(source)
    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TokenizerDataError(f"o200k_base vocabulary {origin} is not valid gzip: {exc}") from exc
    else:
        data = raw
    actual = hashlib.sha256(data).hexdigest()
    if actual != O200K_SHA256:
        raise TokenizerDataError(
            f"o200k_base vocabulary {origin} failed its integrity check: sha256 of the "
            f"decompressed data is {actual}, expected {O200K_SHA256} (tiktoken's hash for "
            "o200k_base). The file is corrupted or is not o200k_base; reinstall bpe-openai."
        )
    ranks: dict[bytes, int] = {}
    b64decode = binascii.a2b_base64
    try:
        for line in data.splitlines():
            if line:
                token, _, rank = line.partition(b" ")
                ranks[b64decode(token)] = int(rank)
    except (ValueError, binascii.Error) as exc:  # unreachable once the hash matched
        raise TokenizerDataError(f"o200k_base vocabulary {origin} is malformed: {exc}") from exc
    if len(ranks) != _O200K_N_RANKS or sorted(ranks.values()) != list(range(_O200K_N_RANKS)):
        raise TokenizerDataError(f"o200k_base vocabulary {origin} does not hold ranks 0..{_O200K_N_RANKS - 1}")
    return ranks


def _o200k_spec(ranks: dict[bytes, int]) -> dict[str, Any]:
    """Run tiktoken_ext's own o200k_base() with its downloader replaced by our ranks.

    The function is rebuilt over a copy of its module globals, so the module
    itself is never patched (other code may call tiktoken concurrently) and the
    pattern and special tokens stay exactly those of the installed tiktoken.
    """
    upstream = _openai_public.o200k_base
    if "load_tiktoken_bpe" not in upstream.__code__.co_names:
        raise TokenizerDataError(
            "tiktoken_ext.openai_public.o200k_base no longer loads its ranks through "
            "load_tiktoken_bpe; update reapi.billing.tokens for this tiktoken version"
        )
    asked: list[str | None] = []

    def offline_loader(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        asked.append(expected_hash)
        return ranks

    offline = types.FunctionType(
        upstream.__code__,
        {**upstream.__globals__, "load_tiktoken_bpe": offline_loader},
        upstream.__name__,
        upstream.__defaults__,
        upstream.__closure__,
    )
    spec = offline()
    if asked != [O200K_SHA256]:
        raise TokenizerDataError(
            f"installed tiktoken expects o200k_base sha256 {asked!r}, pinned {O200K_SHA256}; "
            "the vocabulary changed upstream, re-check the shipped file and the pin"
        )
    if spec.get("name") != "o200k_base" or spec.get("mergeable_ranks") is not ranks:
        raise TokenizerDataError("tiktoken_ext.openai_public.o200k_base returned an unexpected spec")
    return spec


def load_o200k(source: bytes | str | os.PathLike[str] | None = None) -> tiktoken.Encoding:
    """Build a fresh o200k_base tiktoken Encoding without network access.

    `source` defaults to the file shipped with bpe-openai; tests pass a path or
    bytes (gzipped or not). Raises TokenizerDataError when the decompressed data
    does not hash to O200K_SHA256. Uncached: use encoding() in the gateway.
    """
    spec = _o200k_spec(_verified_ranks(source))
    return tiktoken.Encoding(
        name=spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
    )


# Probe for the backend parity check: scripts, numbers, contractions, whitespace
# and punctuation runs, newline/slash handling, emoji, special-token text.
_PARITY_PROBE = (
    "Hello, world! It's 2024-06-01; we'll pay $1,234.56 (≈ €1.1k). I'M DONE, they've gone.\n"
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\r\n\r\n\t\tindent  \n\n\n"
    "Grüße aus Köln — naïve café. Привет, мир! Γειά σου κόσμε. مرحبا بالعالم. שלום עולם.\n"
    "你好，世界。日本語のテキストです。한국어 문장입니다. हिन्दी पाठ। ภาษาไทย\n"
    "🙂👍🏽👨‍👩‍👧 e\u0301 <|endoftext|> <|endofprompt|> http://x.io/a//b ./../ ...!!!???\n"
    "CamelCaseWord snake_case_word ALLCAPS 12345678901 3.14159 0x1F -42 +7 1e-9 "
    + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 3
    + "      trailing spaces   \n"
)


# sha256 of the o200k ids of _PARITY_PROBE joined by commas, as the hash-verified
# vocabulary gives them (test_tokens recomputes it with tiktoken). Checking the backend
# against it spares the gateway tiktoken's own copy of the vocabulary (~130 MB RSS).
_PARITY_IDS_SHA256 = "e505b29863d201fa9b1fdb8c618042e45443ef454de5fa6239ac4013efad090d"


def ids_digest(ids) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Tokenizer:
    count: Callable[[str], int]  # tokens of one slice; always exact o200k, no special tokens
    backend: str


def _bindings_module() -> types.ModuleType:
    """bpe_openai's compiled backend, loaded without running the package's __init__,
    which parses every vocabulary it ships into Python dicts (~60 MB RSS) we never use."""
    import importlib.machinery
    import importlib.util
    import sys
    from pathlib import Path

    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    try:
        package = importlib.util.find_spec("bpe_openai")  # finds, does not import
        so = next(Path(package.origin).parent.glob("_bindings*.so"))
        loader = importlib.machinery.ExtensionFileLoader(name, str(so))
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, so, loader=loader))
        loader.exec_module(module)
    except Exception:  # noqa: BLE001 - an unusual layout: take the ordinary import
        from bpe_openai import _bindings as module
    sys.modules[name] = module
    return module


def _bpe_counter() -> Callable[[str], int] | None:
    try:
        _bindings = _bindings_module()
        backend = _bindings.tokenizer_for_encoding("o200k_base")
        same = ids_digest(backend.encode(_PARITY_PROBE)) == _PARITY_IDS_SHA256
    except Exception as exc:  # noqa: BLE001 - any failure means: use tiktoken
        log.warning("bpe-openai backend unavailable (%r); counting tokens with tiktoken", exc)
        return None
    if not same:
        log.warning("bpe-openai backend disagrees with the verified o200k_base; counting with tiktoken")
        return None
    raw_count = backend.count

    def count(text: str) -> int:
        try:
            return raw_count(text)
        except UnicodeEncodeError:
            # Lone surrogates: replace them as tiktoken's encode_ordinary does.
            return raw_count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    return count


def _build() -> _Tokenizer:
    fast = _bpe_counter()
    if fast is not None:
        return _Tokenizer(fast, "bpe-openai")
    enc = encoding()
    return _Tokenizer(lambda text: len(enc.encode_ordinary(text)), "tiktoken")


_state: _Tokenizer | None = None
_state_lock = threading.Lock()


def _tokenizer() -> _Tokenizer:
    global _state
    state = _state
    if state is None:
        with _state_lock:
            state = _state
            if state is None:
                state = _state = _build()
    return state


_encoding: tiktoken.Encoding | None = None
_encoding_lock = threading.Lock()


def encoding() -> tiktoken.Encoding:
    """The hash-verified o200k_base Encoding, built once (thread-safe) and cached.
    The gateway counts with the bpe-openai backend and loads this only as its fallback."""
    global _encoding
    if _encoding is None:
        with _encoding_lock:
            if _encoding is None:
                _encoding = load_o200k()
    return _encoding


def warm() -> None:
    """Load the vocabulary and the counting backend now (call at server start)."""
    _tokenizer()


def counter_backend() -> str:
    """Which backend count_text uses: "bpe-openai" or "tiktoken" (loads if needed)."""
    return _tokenizer().backend


# --- counting text ---------------------------------------------------------------

# Cut positions where every o200k pre-token ends, so counting the two sides
# separately gives exactly the count of the whole (each alternative of the
# o200k pattern checked by hand):
#   * right after "\n" when the next character is neither whitespace nor "/":
#     only the punctuation piece (tail [\r\n/]*) and the whitespace pieces can
#     hold a "\n", and none of them continues into such a character (where
#     `\s+(?!\S)` could see a difference, `\s*[\r\n]+` has already matched).
#   * between an ASCII letter or digit and a space: letter pieces hold only
#     letters/marks/contractions, digit pieces only digits, so neither takes
#     the space, and the space starts the next piece in both texts.
# Python's \s (str.isspace) is a superset of Unicode White_Space, so the first
# rule is never looser than the tokenizer's \s. Only ASCII is trusted in the
# second rule so Unicode-version differences cannot matter. Each alternative
# starts with a literal so the scan skips other characters quickly in C; the
# cut is after a matched "\n" and before a matched " ".
_SAFE_CUT = re.compile(r"\n(?=[^\s/])| (?<=[A-Za-z0-9] )")


def _count_sliced(text: str, count: Callable[[str], int], chunk: int = _CHUNK_CHARS) -> int:
    n = len(text)
    if n <= chunk:
        return count(text)
    total = 0
    start = 0
    while n - start > chunk:
        cut = _SAFE_CUT.search(text, start + chunk)
        if cut is None:
            break
        end = cut.start()
        if text[end] == "\n":
            end += 1
        total += count(text[start:end])
        # Hand the CPU over between slices: the GIL is free here, and on a busy core the event loop,
        # woken meanwhile, would otherwise wait for the next time slice to take it (bench/huge.py: a
        # loop stall of 50-100 ms beside ten 1M-token counts in every run; with the yield and the
        # thread's nice, over 50 ms once in 11 runs).
        os.sched_yield()
        start = end
    return total + count(text[start:])


# Counts of long texts, by (length, hash): agents send the same long history with every turn, and
# a 1M-token message takes ~70 ms of one core to count but 2-3 ms to hash. Only integers are kept
# (no text), at most _CACHE_ENTRIES of them, the least recently used dropped first. str's hash is
# keyed per process (PYTHONHASHSEED), so a client cannot aim two texts at one entry; were two ever
# to meet, one hold would be sized on the other's count, and settlement still bills the upstream's
# usage.
_CACHE_MIN_CHARS = 64 * 1024
_CACHE_ENTRIES = 512
_counted: dict[tuple[int, int], int] = {}
_counted_lock = threading.Lock()


def count_text(text: str) -> int:
    """o200k_base tokens of plain text.

    Special-token text such as "<|endoftext|>" is ordinary text here (tiktoken's
    encode_ordinary semantics). Never raises: None counts 0, non-strings count
    as str(value), lone surrogates are replaced.
    """
    if not text:
        return 0
    if not isinstance(text, str):
        text = str(text)
    if len(text) < _CACHE_MIN_CHARS:
        return _count_sliced(text, _tokenizer().count)
    key = (len(text), hash(text))
    with _counted_lock:
        n = _counted.pop(key, None)
        if n is not None:
            _counted[key] = n  # the newest again
            return n
    n = _count_sliced(text, _tokenizer().count)
    with _counted_lock:
        _counted[key] = n
        if len(_counted) > _CACHE_ENTRIES:
            del _counted[next(iter(_counted))]  # the least recently counted
    return n



def loaded() -> bool:
    """Whether the counting backend is loaded already (warm() has run)."""
    return _state is not None
