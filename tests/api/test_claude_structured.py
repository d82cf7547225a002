"""Structured output on Claude through /v1/chat/completions: response_format json_schema becomes Claude's
output_config.format (the demo upstream answers JSON valid against the schema, so the openai SDK's
`parse` works for real), json_object the nearest instruction; what Claude cannot honour is a 400 with
code unsupported_parameter."""
from typing import Literal, Optional

import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from reapi.billing.money import format_usd
from reapi.relay.anthropic import ADAPTER
from reapi.relay.anthropic.request import JSON_OBJECT_INSTRUCTION
from tests.api.test_claude import setup, user
from tests.api.test_messages_route import MODEL, client, upstream_bodies
from tests.relay.test_anthropic_adapter import CH


class Address(BaseModel):
    city: str
    postcode: Optional[str]


class Person(BaseModel):
    name: str
    age: int
    role: Literal["admin", "user"]
    emails: list[str]
    home: Address


def payload(body: dict) -> dict:
    import orjson
    return orjson.loads(ADAPTER.build_request(CH, body, "claude-up", stream=False, max_tokens=1000).body)


def test_json_schema_becomes_output_config_format():
    schema = to_strict_json_schema(Person)
    out = payload({"messages": user("hi"), "response_format": {
        "type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": schema}}})
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "response_format" not in out and "system" not in out
    out = payload({"messages": [{"role": "system", "content": "Be brief."}, *user("hi")],
                   "response_format": {"type": "json_object"}})
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    assert "output_config" not in out
    assert "output_config" not in payload({"messages": user("hi"), "response_format": {"type": "text"}})


async def test_parse_on_a_claude_model_validates_for_real(gateway, upstream):
    s = await setup(gateway, upstream)
    oai = gateway.client(s["key"])
    done = await oai.chat.completions.parse(model=MODEL, messages=user("Extract: Ada, 36, admin"),
                                            response_format=Person, max_completion_tokens=500)
    person = done.choices[0].message.parsed
    assert isinstance(person, Person) and done.model == MODEL
    assert Person.model_validate_json(done.choices[0].message.content) == person
    [sent] = await upstream_bodies(upstream)
    assert sent["body"]["output_config"] == {"format": {"type": "json_schema",
                                                        "schema": to_strict_json_schema(Person)}}
    # billed on the upstream's usage, which counts the JSON it produced
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["completion_tokens"] == done.usage.completion_tokens > 5
    assert rec["cost_usd"] == format_usd(done.usage.prompt_tokens * 3000 + done.usage.completion_tokens * 15000)
    # streamed: the SDK assembles the deltas and parses the same object
    async with oai.chat.completions.stream(model=MODEL, messages=user("Extract: Ada, 36, admin"),
                                           response_format=Person, max_completion_tokens=500) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == person
    assert await gateway.verify() == []


async def test_json_object_and_a_schema_less_json_schema(gateway, upstream):
    s = await setup(gateway, upstream)
    oai = gateway.client(s["key"])
    await oai.chat.completions.create(model=MODEL, messages=user("JSON please"),
                                      response_format={"type": "json_object"})
    [sent] = await upstream_bodies(upstream)
    assert sent["body"]["system"] == [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    with pytest.raises(openai.BadRequestError) as ei:
        await oai.chat.completions.create(model=MODEL, messages=user("hi"),
                                          response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert ei.value.code == "unsupported_parameter" and ei.value.param == "response_format.json_schema.schema"
    assert len(await upstream_bodies(upstream)) == 1  # refused before the upstream


async def test_messages_route_passes_output_config_through(gateway, upstream):
    s = await setup(gateway, upstream)
    schema = to_strict_json_schema(Person)
    msg = await client(gateway, s["key"]).messages.create(
        model=MODEL, max_tokens=500, messages=user("Extract: Ada"),
        output_config={"format": {"type": "json_schema", "schema": schema}})
    Person.model_validate_json(msg.content[0].text)
