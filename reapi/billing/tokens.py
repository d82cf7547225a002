"""Offline o200k_base token counting: prepaid holds and stream-end settlement.

The gateway counts a chat request's prompt tokens before forwarding it, to size
the prepaid hold, and counts the produced text when a stream ends without a
usage report. Nothing here touches the network: tiktoken would normally
download its BPE file at run time, which fails in production and CI.

Vocabulary
    The o200k_base ranks come from the file the `bpe-openai` wheel ships as
    package data (``bpe_openai/data/o200k_base.tiktoken.gz``), located with
    importlib.resources and gunzipped. The decompressed bytes must hash to
    O200K_SHA256, which is tiktoken's own expected hash for that file
    (``tiktoken_ext/openai_public.py``, ``o200k_base()``, tiktoken 0.14.0; it
    is the sha256 of https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken).
    bpe-openai 0.1.4 ships the file unchanged, only gzipped (checked: the
    decompressed bytes hash exactly to tiktoken's value), so no transformed
    hash had to be pinned. The pattern and the special tokens are not copied
    here: they come from the installed ``tiktoken_ext.openai_public.o200k_base``,
    run with its downloader swapped for a function that returns our verified
    ranks (see _o200k_spec).

Counting backend. Measured here (2 shared cores, other jobs running, so
ranges over several runs; each figure is the best of 5-100 repetitions):
                                    tiktoken           bpe-openai Rust backend
                                    encode_ordinary    (PyTokenizer.count)
    10 KB English prose (2.4k tok)  0.55-1.0 ms        0.34-0.61 ms
    10 KB Python source (2.7k tok)  0.65-1.15 ms       0.36-0.63 ms
    1 MB English prose (293k tok)   88-259 ms          62-161 ms
    1 MB Python source (235k tok)   76-170 ms          46-108 ms
    1 MB code + Cyrillic/CJK        76-207 ms          49-107 ms
    "A" * 1,000,000 (125k tok)      466-1529 ms        14-62 ms
    "A" * 4,000,000                 3,095 ms           86 ms
    "€" * 4,000,000                 6,241 ms           238 ms
  The Rust backend of bpe-openai (GitHub's linear-time ``bpe`` crate) is about
  1.6x faster on ordinary text and 15-35x on long runs without a pre-token
  break, where tiktoken's BPE grows superlinearly (~n^1.4: a 32 MiB body,
  the largest we accept, would take it about a minute). So counting uses
  ``bpe_openai._bindings.tokenizer_for_encoding("o200k_base")`` directly. The
  public wrapper ``bpe_openai.get_encoding`` is unusable for billing: it raises
  TokenLimitError above 200,000 tokens and ValueError at 1,000,000 characters.
  The backend carries its own compiled-in copy of the vocabulary, so at load
  it must produce exactly the token ids of the hash-verified tiktoken Encoding
  on a multi-script probe; if the import or that check fails we fall back to
  tiktoken (counter_backend() says which). Exact agreement was also fuzzed on
  25,000 random strings and the texts above before choosing it.

  Trade-offs. Memory: the backend holds ~65 MB; it is loaded without the
  package's __init__ (see _bindings_module). The parity check compares
  against a digest of the verified ids (_PARITY_IDS_SHA256) rather than a
  tiktoken Encoding, which would add ~130 MB RSS; tiktoken is loaded only if
  the backend fails. warm() takes about 1 s. The GIL: the bpe backend holds it while it runs
  (tiktoken releases it), so count_text feeds it slices of about 64 K
  characters, cut only where o200k's pre-tokenizer always splits (see
  _SAFE_CUT). The count is unchanged and a thread counting a huge prompt lets
  the event loop run between slices (1 MB prompt via count_prompt_async: the
  loop stalled at most ~17 ms, against ~140 ms unsliced). Text with no safe
  cut for a long stretch (one 32 MB run of "A") is counted in one call, about
  0.7 s with the GIL held.
"""
from __future__ import annotations

import asyncio
import binascii
import gzip
import hashlib
import json
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

__all__ = [
    "CLAUDE_MARGIN_PERCENT",
    "IMAGE_TOKENS",
    "O200K_SHA256",
    "TokenizerDataError",
    "count_completion",
    "count_prompt",
    "count_prompt_async",
    "count_text",
    "counter_backend",
    "encoding",
    "load_o200k",
    "warm",
]

log = logging.getLogger(__name__)

# sha256 of the *decompressed* o200k_base.tiktoken: tiktoken_ext/openai_public.py,
# o200k_base(), expected_hash= (tiktoken 0.14.0). test_tokens checks that the
# installed tiktoken still expects this value and that the shipped file has it.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_O200K_N_RANKS = 199_998  # ranks 0..199997; 199999 and 200018 are the special tokens

_DATA_PACKAGE = "bpe_openai.data"
_DATA_FILE = "o200k_base.tiktoken.gz"

# --- prompt accounting constants -------------------------------------------------

# OpenAI cookbook "How to count tokens with tiktoken" (num_tokens_from_messages,
# gpt-4o / gpt-4 branch): every message costs 3 tokens (<|start|>, role
# separator, <|end|>) on top of the tokens of each of its string values (the
# role included), a `name` costs 1 more, and the reply is primed with
# <|start|>assistant<|message|> = 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# Not in the cookbook: each assistant tool call is rendered with some framing
# around its name and arguments. 3 keeps the hold on the safe side.
TOKENS_PER_TOOL_CALL = 3

# Tools are injected as a TypeScript-like block ("# Tools ... namespace functions
# { ... }") that has framing the JSON lacks. Against prompt_tokens the API
# reported for one system message + one tool (the cases recorded in
# pamelafox/openai-messages-token-helper, tests/functions.py), counting the JSON
# of the functions alone came out 6-20 tokens high for tools with parameters
# but 10 low for a tool without any; adding 12 covers every recorded case.
TOOLS_OVERHEAD_TOKENS = 12

# Fixed allowance per image_url part, whatever its size or detail. OpenAI's tile
# rule (gpt-4o, gpt-4.1, gpt-4.5, o1/o3): fit within 2048x2048, scale down so
# the shortest side is at most 768, then 85 + 170 per 512-px tile (the API
# bills a 1x1 image 85 + 170, so small images are not scaled up). A square
# 2048x2048 image is 768x768 = 4 tiles = 765 tokens; after those steps no image
# exceeds 768x2048 = 2x4 tiles = 85 + 8*170 = 1445, so none can cost more on
# those models (detail "low" is 85). It also covers Claude's
# images (width*height/750, about 1600 at most after Claude's own downscaling;
# the Claude margin raises 1445 to 1879). Known exception: gpt-4o-mini bills
# images at 2833 + 5667 per tile (the same dollars as gpt-4o at its lower rate),
# and gpt-4.1-mini/nano use 32-px patches times 1.62/2.46 (up to ~2500/3800):
# the hold for an image on those models is short and settlement absorbs it.
IMAGE_TOKENS = 1445

# input_audio parts: user audio costs 1 token per 100 ms (OpenAI "Managing
# costs" guide for realtime/audio models), i.e. 10 tokens/s. The most bytes-
# efficient encoding accepted (mp3 at its 8 kbps minimum = 1000 B/s) gives 100
# raw bytes = 133 base64 characters per token; counting 1 token per 100 base64
# characters is therefore an upper bound for any wav/mp3 (pcm16 wav is >10x
# below it).
AUDIO_B64_CHARS_PER_TOKEN = 100

# file parts (PDF): OpenAI gives the model each page's extracted text plus an
# image of the page (a letter-size page is 4 tiles = 765 tokens on gpt-4o). A
# compact text PDF (~4 KB per page, ~650 text tokens) costs ~1400 tokens per
# ~5.3 K base64 characters, about 1 token per 3.8 characters; counting 1 token
# per 2 base64 characters holds ~2x that. The length cannot bound the page
# count, so a PDF of nearly empty pages can still exceed it (settlement
# absorbs the difference), while font/image-heavy PDFs are held far above cost.
FILE_B64_CHARS_PER_TOKEN = 2
# A file referenced only by file_id: its size is unknown here. Allowance of
# about 5 dense pages (5 x ~2000 tokens).
FILE_REF_TOKENS = 10_000

# Claude's tokenizer is not public. A published comparison of the same inputs
# through Claude 3.5 Sonnet and GPT-4o (o200k) ("Hidden costs in AI deployment:
# why Claude models may be 20-30% more expensive than GPT in enterprise
# settings", May 2025, widely syndicated) found Claude's counts ~16% higher on English
# articles, ~21% on math and ~30% on Python code. 30% covers the worst measured
# domain, so the hold errs high on prose rather than low on code. Other Claude
# generations may differ; settlement uses the usage Anthropic reports.
CLAUDE_MARGIN_PERCENT = 30

# count_prompt_async moves counting to a worker thread above this many
# characters of text to tokenize; below it counting takes a few ms at most.
ASYNC_THRESHOLD_CHARS = 64 * 1024

# Target size of the slices handed to the counting backend (see module doc).
_CHUNK_CHARS = 64 * 1024

_FAMILIES_WITH_MARGIN = frozenset({"claude", "anthropic"})


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
        start = end
    return total + count(text[start:])


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
    return _count_sliced(text, _tokenizer().count)


def count_completion(text: str) -> int:
    """o200k_base tokens of text a model produced (stream ended without usage)."""
    return count_text(text)


# --- counting a chat request -----------------------------------------------------


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # e.g. circular or non-str keys
        return str(value)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Tally:
    """Texts to tokenize plus fixed token amounts, collected before counting."""

    __slots__ = ("texts", "fixed")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = 0

    def text(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self.texts.append(value)
        elif value is not None:
            self.texts.append(_json(value))

    def chars(self) -> int:
        return sum(map(len, self.texts))

    def count(self) -> int:
        return self.fixed + sum(count_text(t) for t in self.texts)


def _tally_part(part: Any, tally: _Tally) -> None:
    if isinstance(part, str):
        tally.text(part)
        return
    if not isinstance(part, dict):
        tally.text(part)
        return
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        tally.text(part["text"])
    elif kind == "refusal" and isinstance(part.get("refusal"), str):
        tally.text(part["refusal"])
    elif kind == "image_url":
        tally.fixed += IMAGE_TOKENS
    elif kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if isinstance(data, str):
            tally.fixed += _ceil_div(len(data), AUDIO_B64_CHARS_PER_TOKEN)
        else:
            tally.text(part)
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, dict):
            tally.text(part)
            return
        data = file.get("file_data")
        if isinstance(data, str) and data:
            tally.fixed += _ceil_div(len(data), FILE_B64_CHARS_PER_TOKEN)
        else:
            tally.fixed += FILE_REF_TOKENS
        tally.text(file.get("filename"))
    else:
        tally.text(part)  # unknown part type: its JSON


def _tally_content(content: Any, tally: _Tally) -> None:
    if isinstance(content, list):
        for part in content:
            _tally_part(part, tally)
    else:
        tally.text(content)


def _tally_call(call: Any, tally: _Tally) -> None:
    tally.fixed += TOKENS_PER_TOOL_CALL
    fn = call.get("function") if isinstance(call, dict) else None
    if isinstance(fn, dict):
        tally.text(fn.get("name"))
        tally.text(fn.get("arguments"))
        rest = {k: v for k, v in call.items() if k not in ("function", "id", "type")}
        if rest:
            tally.text(rest)
    else:
        tally.text(call)  # custom tool calls and anything else: their JSON


def _tally_message(message: Any, tally: _Tally) -> None:
    tally.fixed += TOKENS_PER_MESSAGE
    if not isinstance(message, dict):
        tally.text(message)
        return
    for key, value in message.items():
        if value is None:
            continue
        if key == "content":
            _tally_content(value, tally)
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                _tally_call(call, tally)
        elif key == "function_call" and isinstance(value, dict):  # legacy functions API
            _tally_call({"function": value}, tally)
        else:
            # role, name, tool_call_id, refusal, ...: the cookbook counts every
            # string value; non-strings (e.g. assistant audio {"id": ...}) as JSON.
            tally.text(value)
            if key == "name":
                tally.fixed += TOKENS_PER_NAME


def _tally_body(body: Any) -> _Tally:
    tally = _Tally()
    if not isinstance(body, dict):
        tally.text(body)
        return tally
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            _tally_message(message, tally)
    elif messages is not None:
        tally.text(messages)
    tally.fixed += REPLY_PRIMING_TOKENS

    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        functions = [
            t["function"] if isinstance(t, dict) and t.get("type") == "function" and "function" in t else t
            for t in tools
        ]
        tally.text(_json(functions))
        tally.fixed += TOOLS_OVERHEAD_TOKENS
    elif tools:
        tally.text(tools)
    functions = body.get("functions")  # legacy functions API
    if functions:
        tally.text(_json(functions))
        tally.fixed += TOOLS_OVERHEAD_TOKENS
    for choice_key in ("tool_choice", "function_call"):
        tally.text(body.get(choice_key))  # "auto"/"none" strings or {"function": {...}}

    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tally.text(_json(response_format.get("json_schema", response_format)))
    return tally


def _apply_family(o200k_tokens: int, family: str) -> int:
    if family == "openai":
        return o200k_tokens
    if family in _FAMILIES_WITH_MARGIN:
        return _ceil_div(o200k_tokens * (100 + CLAUDE_MARGIN_PERCENT), 100)
    raise ValueError(f"unknown tokenizer family {family!r}; expected 'openai' or 'claude'")


def count_prompt(body: dict, family: str = "openai") -> int:
    """Input tokens to hold for an already validated OpenAI chat request body.

    Per message: TOKENS_PER_MESSAGE + the tokens of each string value (role,
    content text, name (+TOKENS_PER_NAME), tool_call_id, ...); content parts:
    text counted, image_url IMAGE_TOKENS each, input_audio and file data by
    length (see the constants), unknown parts by their JSON; assistant
    tool_calls: name + arguments + TOKENS_PER_TOOL_CALL each. Plus
    REPLY_PRIMING_TOKENS, the JSON of the tools' function definitions plus
    TOOLS_OVERHEAD_TOKENS, tool_choice, and a json_schema response_format. family "claude" (or
    "anthropic") adds CLAUDE_MARGIN_PERCENT, rounded up. Always an int.
    """
    return _apply_family(_tally_body(body).count(), family)


async def count_prompt_async(body: dict, family: str = "openai") -> int:
    """count_prompt for the event loop: over ASYNC_THRESHOLD_CHARS of text to
    tokenize (or before the vocabulary is loaded) the work runs in a thread."""
    if _state is None:
        await asyncio.to_thread(warm)
    tally = _tally_body(body)
    if tally.chars() > ASYNC_THRESHOLD_CHARS:
        tokens = await asyncio.to_thread(tally.count)
    else:
        tokens = tally.count()
    return _apply_family(tokens, family)
