"""Group and key limits enforced on the chat route (in-process backend)."""
import openai
import pytest

HI = [{"role": "user", "content": "hi"}]


async def test_group_rpm_limit_answers_429_with_headers(gateway, upstream):
    s = await gateway.setup(upstream)
    await gateway.admin("PUT", "/admin/groups/default", {"rpm": 2, "tpm": None}, expect=200)
    client = gateway.client(s["key"])
    raw = await client.chat.completions.with_raw_response.create(model="gpt-5.5", messages=HI)
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    await client.chat.completions.create(model="gpt-5.5", messages=HI)
    with pytest.raises(openai.RateLimitError) as ei:
        await client.chat.completions.create(model="gpt-5.5", messages=HI)
    e = ei.value
    assert (e.code, e.type) == ("rate_limit_exceeded", "requests")
    assert int(e.response.headers["retry-after"]) >= 1
    assert len(await upstream.requests()) == 2  # the refused call never went upstream
    assert len(await gateway.usage(s["account_id"])) == 2  # and holds nothing


async def test_tpm_counts_prompt_plus_output_cap(gateway, upstream):
    s = await gateway.setup(upstream)
    await gateway.admin("PUT", "/admin/groups/default", {"tpm": 1000}, expect=200)
    client = gateway.client(s["key"])
    with pytest.raises(openai.RateLimitError) as ei:
        await client.chat.completions.create(model="gpt-5.5", messages=HI, max_tokens=5000)
    assert ei.value.type == "tokens"
    raw = await client.chat.completions.with_raw_response.create(model="gpt-5.5", messages=HI, max_tokens=100)
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000"


async def test_per_key_rpm(gateway, upstream):
    s = await gateway.setup(upstream, key={"rpm": 1})
    client = gateway.client(s["key"])
    await client.chat.completions.create(model="gpt-5.5", messages=HI)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="gpt-5.5", messages=HI)
