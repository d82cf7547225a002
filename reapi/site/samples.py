"""The quick examples of a model page: one call to /v1/chat/completions in curl, Python (openai
SDK), Node (openai SDK) and Go (net/http), with this deployment's base URL and the model's name.
The key is read from the REAPI_API_KEY environment variable in each of them. tests/site runs the
curl and Python ones against a real gateway."""
from __future__ import annotations

import json
import shlex


def curl(base: str, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello in one sentence."}]})
    return (f"curl {base}/v1/chat/completions \\\n"
            "  -H \"Authorization: Bearer $REAPI_API_KEY\" \\\n"
            "  -H \"Content-Type: application/json\" \\\n"
            f"  -d {shlex.quote(body)}")


def python(base: str, model: str) -> str:
    return ("import os\n\nfrom openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(base + '/v1')}, api_key=os.environ[\"REAPI_API_KEY\"])\n"
            "reply = client.chat.completions.create(\n"
            f"    model={json.dumps(model)},\n"
            "    messages=[{\"role\": \"user\", \"content\": \"Say hello in one sentence.\"}],\n"
            ")\n"
            "print(reply.choices[0].message.content)\n")


def node(base: str, model: str) -> str:
    return ("import OpenAI from \"openai\";\n\n"
            f"const client = new OpenAI({{ baseURL: {json.dumps(base + '/v1')}, apiKey: process.env.REAPI_API_KEY }});\n"
            "const reply = await client.chat.completions.create({\n"
            f"  model: {json.dumps(model)},\n"
            "  messages: [{ role: \"user\", content: \"Say hello in one sentence.\" }],\n"
            "});\n"
            "console.log(reply.choices[0].message.content);\n")


def go(base: str, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello in one sentence."}]})
    return ("package main\n\n"
            "import (\n\t\"fmt\"\n\t\"io\"\n\t\"net/http\"\n\t\"os\"\n\t\"strings\"\n)\n\n"
            "func main() {\n"
            f"\tbody := strings.NewReader(`{body}`)\n"
            f"\treq, _ := http.NewRequest(\"POST\", {json.dumps(base + '/v1/chat/completions')}, body)\n"
            "\treq.Header.Set(\"Authorization\", \"Bearer \"+os.Getenv(\"REAPI_API_KEY\"))\n"
            "\treq.Header.Set(\"Content-Type\", \"application/json\")\n"
            "\tresp, err := http.DefaultClient.Do(req)\n"
            "\tif err != nil {\n\t\tpanic(err)\n\t}\n"
            "\tdefer resp.Body.Close()\n"
            "\tout, _ := io.ReadAll(resp.Body)\n"
            "\tfmt.Println(resp.Status, string(out))\n"
            "}\n")


def tools_recipe(base: str, model: str) -> str:
    return ("import json, os\n\nfrom openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(base + '/v1')}, api_key=os.environ[\"REAPI_API_KEY\"])\n"
            "tools = [{\"type\": \"function\", \"function\": {\n"
            "    \"name\": \"get_weather\", \"description\": \"The weather in a city\",\n"
            "    \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}},\n"
            "                   \"required\": [\"city\"]}}}]\n"
            f"reply = client.chat.completions.create(model={json.dumps(model)}, tools=tools,\n"
            "    messages=[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}])\n"
            "for call in reply.choices[0].message.tool_calls or []:\n"
            "    print(call.function.name, json.loads(call.function.arguments))\n")


def reasoning_recipe(base: str, model: str) -> str:
    return ("import os\n\nfrom openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(base + '/v1')}, api_key=os.environ[\"REAPI_API_KEY\"])\n"
            f"reply = client.chat.completions.create(model={json.dumps(model)}, reasoning_effort=\"low\",\n"
            "    messages=[{\"role\": \"user\", \"content\": \"What is 17 * 23?\"}])\n"
            "print(reply.choices[0].message.content, reply.usage.completion_tokens_details)\n")


def all_samples(base: str, model: str) -> list[dict]:
    return [{"lang": "curl", "label": "curl", "code": curl(base, model)},
            {"lang": "python", "label": "Python (openai SDK)", "code": python(base, model)},
            {"lang": "node", "label": "Node (openai SDK)", "code": node(base, model)},
            {"lang": "go", "label": "Go (net/http)", "code": go(base, model)}]
