"""Counting a Responses request's prompt for the hold (reapi.billing.tokens.count_responses_prompt)."""
from reapi.billing import tokens
from reapi.billing.tokens import (FILE_REF_TOKENS, IMAGE_TOKENS, REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE,
                                  TOKENS_PER_TOOL_CALL, TOOLS_OVERHEAD_TOKENS, count_responses_prompt, count_text)


def test_string_input_and_instructions():
    body = {"model": "m", "input": "Hello there", "instructions": "Be brief."}
    assert count_responses_prompt(body) == (2 * TOKENS_PER_MESSAGE + count_text("Hello there")
                                            + count_text("Be brief.") + REPLY_PRIMING_TOKENS)


def test_items_parts_calls_outputs_and_reasoning():
    enc = "g" * 400
    body = {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": "x"},
                                     {"type": "input_file", "file_id": "f"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}], "encrypted_content": enc},
        {"type": "function_call", "call_id": "c1", "name": "get", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "item_reference", "id": "msg_1"},
    ]}
    expected = (5 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS
                + count_text("user") + count_text("look") + IMAGE_TOKENS + FILE_REF_TOKENS
                + count_text("thought") + len(enc) // 4
                + TOKENS_PER_TOOL_CALL + count_text("get") + count_text('{"a":1}') + 2 * count_text("c1")
                + count_text("sunny"))
    assert count_responses_prompt(body) == expected


def test_tools_and_json_schema_format_count():
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    base = count_responses_prompt({"model": "m", "input": "x"})
    with_tools = count_responses_prompt({"model": "m", "input": "x", "tools": tools})
    assert with_tools == base + count_text(tokens._json(tools)) + TOOLS_OVERHEAD_TOKENS
    fmt = {"type": "json_schema", "name": "out", "schema": {"type": "object"}}
    assert count_responses_prompt({"model": "m", "input": "x", "text": {"format": fmt}}) == base + count_text(
        tokens._json(fmt))


async def test_async_matches_and_big_prompts_count_the_same():
    body = {"model": "m", "input": "word " * 20000}
    assert await tokens.count_responses_prompt_async(body) == count_responses_prompt(body)
