"""Run by tests/api/test_responses_agents.py inside its own venv (openai-agents pinned there): one agent with a
function tool, in the Agents SDK's default (Responses) mode, against reapi. Tracing is off (it would export
to OpenAI). Prints one JSON line: the final output and the tool's calls."""
import asyncio
import json
import os

from agents import (Agent, Runner, function_tool, set_default_openai_api, set_default_openai_client,
                    set_tracing_disabled)
from agents.models import _openai_shared
from openai import AsyncOpenAI

set_tracing_disabled(True)
client = AsyncOpenAI(base_url=os.environ["REAPI_BASE_URL"], api_key=os.environ["REAPI_TEST_KEY"], max_retries=0)
set_default_openai_client(client, use_for_tracing=False)
set_default_openai_api("responses")  # the default already; said out loud
calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


async def main() -> None:
    agent = Agent(name="weather", instructions="Answer with the tool.", model=os.environ.get("REAPI_TEST_MODEL", "gpt-5.5"),
                  tools=[get_weather])
    result = await Runner.run(agent, "What is the weather in Tokyo? [mock words=3]")
    print(json.dumps({"final": result.final_output, "calls": calls,
                      "api": _openai_shared.get_use_responses_by_default()}))


asyncio.run(main())
