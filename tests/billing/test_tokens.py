"""reapi.billing.tokens: offline o200k_base counting for holds and settlement."""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import random
import socket
import threading
import time
import types
from importlib import resources

import bpe_openai
import pytest
import tiktoken
from tiktoken_ext import openai_public

from reapi.billing import tokens, vocab
from reapi.billing.tokens import (
    CLAUDE_MARGIN_PERCENT,
    IMAGE_TOKENS,
    O200K_SHA256,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOKENS_PER_TOOL_CALL,
    TOOLS_OVERHEAD_TOKENS,
    TokenizerDataError,
    count_completion,
    count_prompt,
    count_prompt_async,
    count_text,
)

# o200k_base ids from tiktoken; "tiktoken is great!" is the example in tiktoken's README.
KNOWN = {
    "Hello world": [13225, 2375],
    "Hello, world!": [13225, 11, 2375, 0],
    "tiktoken is great!": [83, 8251, 2488, 382, 2212, 0],
    "The quick brown fox jumps over the lazy dog.": [976, 4853, 19705, 68347, 65613, 1072, 290, 29082, 6446, 13],
    "你好，世界": [177519, 979, 28428],
    "Grüße aus Köln": [3193, 572, 13153, 3976, 85686],
    "🙂👍🏽": [37459, 82514, 52622, 121],
}


@pytest.fixture(scope="module")
def bpe_enc():
    return bpe_openai.get_encoding("o200k_base")


@pytest.fixture(scope="module")
def shipped_plain() -> bytes:
    gz = resources.files("bpe_openai.data").joinpath("o200k_base.tiktoken.gz").read_bytes()
    return gzip.decompress(gz)


def ref(text: str) -> int:
    """The reference count: the verified tiktoken Encoding itself."""
    return len(tokens.encoding().encode_ordinary(text))


# --- vocabulary, hash, offline loading ---------------------------------------------


def test_pinned_hash_is_tiktokens_and_the_shipped_files(shipped_plain):
    assert hashlib.sha256(shipped_plain).hexdigest() == O200K_SHA256
    # the hash the installed tiktoken_ext passes for o200k_base, read from its own code
    assert O200K_SHA256 in openai_public.o200k_base.__code__.co_consts


def test_encoding_is_cached_o200k_with_upstream_pattern_and_specials():
    enc = tokens.encoding()
    assert enc is tokens.encoding()
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.name == "o200k_base"
    assert enc.n_vocab == 200_019
    assert enc.special_tokens_set == {"<|endoftext|>", "<|endofprompt|>"}
    assert enc.eot_token == 199_999
    captured = {}

    def fake_loader(blobpath, expected_hash=None):
        captured["hash"] = expected_hash
        return {}

    # The pattern is the one tiktoken_ext builds, not a copy.
    upstream = types.FunctionType(
        openai_public.o200k_base.__code__, {**openai_public.__dict__, "load_tiktoken_bpe": fake_loader}
    )()
    assert enc._pat_str == upstream["pat_str"]
    assert enc._special_tokens == upstream["special_tokens"]
    assert captured["hash"] == O200K_SHA256


@pytest.mark.parametrize("text,ids", KNOWN.items())
def test_known_strings_exact(text, ids, bpe_enc):
    assert tokens.encoding().encode_ordinary(text) == ids
    assert bpe_enc.encode(text) == ids  # bpe-openai's own encoder agrees
    assert count_text(text) == len(ids)
    assert count_completion(text) == len(ids)


def test_corrupted_copy_is_rejected(tmp_path, shipped_plain):
    # one rank changed: still parseable, but not o200k_base
    corrupted = shipped_plain.replace(b"IQ== 0\n", b"IQ== 7\n", 1)
    assert corrupted != shipped_plain
    with pytest.raises(TokenizerDataError, match="integrity check"):
        tokens.load_o200k(corrupted)
    path = tmp_path / "o200k_base.tiktoken.gz"
    path.write_bytes(gzip.compress(corrupted, compresslevel=1))
    with pytest.raises(TokenizerDataError, match="sha256"):
        tokens.load_o200k(path)
    with pytest.raises(TokenizerDataError, match="sha256"):
        tokens.load_o200k(str(path))
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(resources.files("bpe_openai.data").joinpath("o200k_base.tiktoken.gz").read_bytes()[:1000])
    with pytest.raises(TokenizerDataError, match="gzip"):
        tokens.load_o200k(truncated)
    with pytest.raises(TokenizerDataError):
        tokens.load_o200k(tmp_path / "missing.gz")


def test_loads_with_networking_disabled(monkeypatch, tmp_path, shipped_plain):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # fail fast, no DNS wait
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    # the patch is effective: stock tiktoken cannot fetch o200k_base now
    with pytest.raises(Exception):
        tiktoken.load.load_tiktoken_bpe(
            "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken", O200K_SHA256
        )
    # the whole lazy init (shipped file, tiktoken Encoding, bpe backend) works offline
    monkeypatch.setattr(vocab, "_state", None)
    tokens.warm()
    assert tokens.encoding().encode_ordinary("Hello world") == [13225, 2375]
    assert count_text("tiktoken is great!") == 6
    assert tokens.counter_backend() == "bpe-openai"
    # and so does an explicit source, here uncompressed bytes
    assert tokens.load_o200k(shipped_plain).encode_ordinary("Hello, world!") == KNOWN["Hello, world!"]


def test_lazy_init_is_thread_safe(monkeypatch):
    loaded = vocab._tokenizer()
    monkeypatch.setattr(vocab, "_state", None)
    builds = []

    def counting_build():
        builds.append(1)
        time.sleep(0.05)  # a slow load: the other threads must wait, not build again
        return loaded

    monkeypatch.setattr(vocab, "_build", counting_build)
    barrier = threading.Barrier(8)
    seen = []

    def worker():
        barrier.wait()
        seen.append(vocab._tokenizer())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(builds) == 1
    assert len(seen) == 8 and all(e is seen[0] for e in seen)


def test_parity_digest_is_the_verified_vocabularys():
    # The backend is checked against this digest at start-up instead of a loaded Encoding.
    ids = tokens.encoding().encode_ordinary(vocab._PARITY_PROBE)
    assert len(ids) > 200
    assert vocab.ids_digest(ids) == vocab._PARITY_IDS_SHA256
    assert vocab.ids_digest(ids[:-1]) != vocab._PARITY_IDS_SHA256


def test_falls_back_to_tiktoken_when_backend_disagrees(monkeypatch, caplog):
    from bpe_openai import _bindings

    class WrongBackend:
        def encode(self, text):
            return [1, 2, 3]

        def count(self, text):  # pragma: no cover - must never be used
            raise AssertionError("disagreeing backend used")

    monkeypatch.setattr(_bindings, "tokenizer_for_encoding", lambda name: WrongBackend())
    enc = tokens.encoding()
    monkeypatch.setattr(vocab, "load_o200k", lambda source=None: enc)  # reuse, skip the reload
    monkeypatch.setattr(vocab, "_state", None)
    assert tokens.counter_backend() == "tiktoken"
    assert "disagrees" in caplog.text
    for text, ids in KNOWN.items():
        assert count_text(text) == len(ids)
    assert count_text("<|endoftext|>") == 7
    assert count_text("a\udfffb") == 3


# --- count_text --------------------------------------------------------------------


def test_special_token_text_counts_as_ordinary_text():
    for text in ("<|endoftext|>", "<|endofprompt|>", "a <|endoftext|> b <|fim_prefix|>"):
        assert count_text(text) == ref(text)
    assert count_text("<|endoftext|>") == 7  # not the single special token 199999
    body = {"messages": [{"role": "user", "content": "<|endoftext|><|endofprompt|>"}]}
    assert count_prompt(body) == TOKENS_PER_MESSAGE + 1 + ref("<|endoftext|><|endofprompt|>") + REPLY_PRIMING_TOKENS


def test_count_text_never_raises():
    assert count_text("") == 0
    assert count_text(None) == 0  # type: ignore[arg-type]
    assert count_text(12345) == ref("12345")  # type: ignore[arg-type]
    for text in ("\ud800", "a\udfffb", "x" * 10 + "\udc80"):  # lone surrogates
        assert count_text(text) == ref(text)


def test_backend_matches_tiktoken_on_varied_text():
    rng = random.Random(20240601)
    alphabet = list(" \t\n\r  aAzZ09'’sé中文日本語한국어Привет🙂👍🏽\u0301\u200d.,;:!?/\\-_()[]{}<|>\"#$%&*") + [
        "<|endoftext|>", "'s", "'LL", "\r\n", "   ", "\n\n", "http://", "  \n",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 50)))
        assert count_text(text) == ref(text), repr(text)


def test_slicing_at_safe_cuts_is_exact():
    """_count_sliced with tiny slices must equal counting the whole text."""
    rng = random.Random(7)
    pieces = ["word", " ", "\n", "\r\n", "  ", "/", "x/", ".\n", "!!\n/", "12", "345", "Ab", "ÉTÉ", "été",
              "'s", "\t", "中文", "🙂", " \n ", "\n\n\t", "-", "é", "\u0301", "a1", "1a", "\u00a0"]
    count = vocab._tokenizer().count
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        whole = ref(text)
        for chunk in (1, 2, 3, 5, 8):
            assert vocab._count_sliced(text, count, chunk) == whole, (repr(text), chunk)


def test_large_text_beyond_bpe_openai_wrapper_limits():
    # bpe_openai.get_encoding() refuses >= 1,000,000 characters and > 200,000 tokens
    text = ("The quick brown fox, 12345 jumps!\n" + "Grüße 世界 🙂 ") * 30_000  # ~1.3 M chars
    n = count_text(text)
    assert n > 200_000
    assert n == ref(text)
    assert count_text("A" * 300_000) == ref("A" * 300_000)  # one pre-token piece, no safe cut


# --- count_prompt --------------------------------------------------------------------


def test_simple_message_is_text_plus_overheads():
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello world"}]}
    # 3 per message + "user" (1) + "Hello world" (2) + 3 reply priming
    assert count_prompt(body) == 9
    assert count_prompt(body) == TOKENS_PER_MESSAGE + count_text("user") + 2 + REPLY_PRIMING_TOKENS


def test_name_and_several_messages():
    body = {
        "messages": [
            {"role": "system", "content": "You are a bot."},
            {"role": "user", "name": "alice", "content": "Hello, world!"},
            {"role": "assistant", "content": "Hi."},
        ]
    }
    expected = (
        3 * TOKENS_PER_MESSAGE
        + REPLY_PRIMING_TOKENS
        + count_text("system") + count_text("You are a bot.")
        + count_text("user") + count_text("alice") + TOKENS_PER_NAME + 4
        + count_text("assistant") + count_text("Hi.")
    )
    assert count_prompt(body) == expected


def test_content_parts_and_image_allowance():
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe this picture:"}]}]}
    with_images = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this picture:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 50_000}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "low"}},
                ],
            }
        ]
    }
    assert count_prompt(with_images) == count_prompt(text_only) + 2 * IMAGE_TOKENS
    assert IMAGE_TOKENS == 85 + 8 * 170  # worst case of OpenAI's tile rule


def test_audio_and_file_parts_count_by_data_length():
    base = {"messages": [{"role": "user", "content": []}]}
    empty = count_prompt(base)
    audio = {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "U" * 1001, "format": "mp3"}}]}]}
    assert count_prompt(audio) == empty + 11  # ceil(1001 / 100)
    pdf = {"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64," + "J" * 972, "filename": "a.pdf"}}]}]}
    assert count_prompt(pdf) == empty + 500 + count_text("a.pdf")  # ceil(1000 / 2)
    by_id = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}
    assert count_prompt(by_id) == empty + tokens.FILE_REF_TOKENS


def test_tools_tool_calls_and_tool_results():
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    plain = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    with_tools = {**plain, "tools": [tool]}
    functions_json = json.dumps([tool["function"]], ensure_ascii=False, separators=(",", ":"))
    assert count_prompt(with_tools) == count_prompt(plain) + count_text(functions_json) + TOOLS_OVERHEAD_TOKENS
    forced = {**with_tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    assert count_prompt(forced) > count_prompt(with_tools)

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    turn = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
        ]
    }
    expected = (
        count_prompt(plain)
        + TOKENS_PER_MESSAGE + count_text("assistant")
        + TOKENS_PER_TOOL_CALL + count_text("get_weather") + count_text('{"city":"Paris"}')
        + TOKENS_PER_MESSAGE + count_text("tool") + count_text("call_1") + count_text("18°C, sunny")
    )
    assert count_prompt(turn) == expected


def test_response_format_json_schema_counted():
    plain = {"messages": [{"role": "user", "content": "Give me a cat."}]}
    schema = {"name": "cat", "strict": True, "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}
    body = {**plain, "response_format": {"type": "json_schema", "json_schema": schema}}
    schema_json = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    assert count_prompt(body) == count_prompt(plain) + count_text(schema_json)
    assert count_prompt({**plain, "response_format": {"type": "json_object"}}) == count_prompt(plain)


def test_odd_but_valid_bodies_never_raise():
    unknown_part = {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}
    body = {
        "messages": [
            {"role": "developer", "content": [unknown_part, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "", "refusal": None, "audio": {"id": "audio_1"}},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "x" * 10, "name": "bob"},
        ],
        "tools": [{"type": "custom", "custom": {"name": "grep"}}],
        "tool_choice": "auto",
    }
    n = count_prompt(body)
    assert isinstance(n, int)
    unknown_json = json.dumps(unknown_part, ensure_ascii=False, separators=(",", ":"))
    without_unknown = json.loads(json.dumps(body))
    del without_unknown["messages"][0]["content"][0]
    assert n == count_prompt(without_unknown) + count_text(unknown_json)
    assert count_prompt({"messages": []}) == REPLY_PRIMING_TOKENS


def test_claude_margin_arithmetic_is_exact_integer():
    assert CLAUDE_MARGIN_PERCENT == 30
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello world"}]}
    assert count_prompt(body) == 9
    claude = count_prompt(body, "claude")
    assert claude == 12 and isinstance(claude, int)  # ceil(9 * 1.30) = ceil(11.7)
    assert count_prompt(body, "anthropic") == 12
    for n_words in range(0, 60):
        b = {"messages": [{"role": "user", "content": "word " * n_words}]}
        o = count_prompt(b)
        assert count_prompt(b, "claude") == -(-o * (100 + CLAUDE_MARGIN_PERCENT) // 100)
    b = {"messages": [{"role": "user", "content": "a b c d e f g"}]}  # 3+1+7+3 = 14 -> 18.2 -> 19
    assert count_prompt(b) == 14 and count_prompt(b, "claude") == 19
    with pytest.raises(ValueError):
        count_prompt(body, "gemini")


# --- count_prompt_async ----------------------------------------------------------------


async def test_async_small_inline_large_on_the_one_counting_thread(monkeypatch):
    """Small prompts are counted on the loop; large ones on one counting thread, one after another
    (several counting threads would take turns with the loop for the GIL and stall it)."""
    tokens.warm()
    seen: list[str] = []
    real = tokens.count_text

    def observed(text):
        seen.append(threading.current_thread().name)
        return real(text)

    monkeypatch.setattr(tokens, "count_text", observed)
    small = {"messages": [{"role": "user", "content": "Hello world"}]}
    assert await count_prompt_async(small) == 9
    assert await count_prompt_async(small, "claude") == 12
    assert set(seen) == {threading.current_thread().name}

    seen.clear()
    big = {"messages": [{"role": "user", "content": "Lorem ipsum dolor sit amet. " * 3000}]}  # 84 KB
    exact, exact_claude = count_prompt(big), count_prompt(big, "claude")
    seen.clear()
    assert await asyncio.gather(*(count_prompt_async(big) for _ in range(3)), count_prompt_async(big, "claude")) \
        == [exact] * 3 + [exact_claude]
    assert len(set(seen)) == 1 and seen[0].startswith("reapi-tokens")


async def test_async_loads_vocabulary_off_the_loop(monkeypatch):
    loaded = vocab._tokenizer()
    monkeypatch.setattr(vocab, "_state", None)
    built_on = []

    def build():
        built_on.append(threading.get_ident())
        return loaded

    monkeypatch.setattr(vocab, "_build", build)
    assert await count_prompt_async({"messages": [{"role": "user", "content": "Hello world"}]}) == 9
    assert len(built_on) == 1 and built_on[0] != threading.get_ident()


def test_a_long_text_is_counted_once_and_any_change_is_counted_afresh(monkeypatch):
    monkeypatch.setattr(vocab, "_counted", {})
    monkeypatch.setattr(vocab, "_CACHE_ENTRIES", 3)
    enc = vocab.encoding()  # tiktoken on the verified vocabulary: the reference, no cache
    rnd = random.Random(3)
    base = " ".join(rnd.choice(["river", "stone", "blue", "7", "été", "ok?"]) for _ in range(20_000))
    assert len(base) >= vocab._CACHE_MIN_CHARS
    first = count_text(base)
    assert first == len(enc.encode_ordinary(base))
    assert list(vocab._counted.values()) == [first]
    assert count_text(base) == first and len(vocab._counted) == 1  # the second time from the cache
    changed = base[:-1] + "Z"
    assert count_text(changed) == len(enc.encode_ordinary(changed)) and len(vocab._counted) == 2
    for i in range(4):
        count_text(f"{i} {base}")
    assert len(vocab._counted) == 3  # bounded: the least recently counted went first
    assert (len(base), hash(base)) not in vocab._counted
    short = "a short prompt"
    count_text(short)
    assert (len(short), hash(short)) not in vocab._counted  # short texts are counted every time


async def test_large_prompts_are_counted_on_one_thread_of_lower_cpu_priority():
    body = {"model": "m", "messages": [{"role": "user", "content": "seven rivers " * 20_000}]}
    assert await count_prompt_async(body) == count_prompt(body)
    counters = [t for t in threading.enumerate() if t.name.startswith("reapi-tokens")]
    assert len(counters) == 1
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # the loop's thread: unchanged
    assert os.getpriority(os.PRIO_PROCESS, counters[0].native_id) >= max(tokens.COUNTER_NICE, loop_nice)
