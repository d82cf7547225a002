"""The public API's OpenAPI 3.1 document (GET /openapi.json): chat completions (its body schema
built from the validator's rules), models, responses and messages, and the task gateway under
/api/v1 (reapi.site.openapi_tasks, from the task wing's own tables). The admin API's own document
is at /admin/openapi.json."""
from __future__ import annotations

from reapi.api.validation import parameter_rules
from reapi.catalog import TaskModel
from reapi.site import openapi_tasks

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "object": "object", "array": "array"}


def _schema(rule: dict) -> dict:
    types = [t.strip() for t in rule["type"].split("|")]
    s: dict = {"type": types[0]} if len(types) == 1 else {"oneOf": [{"type": t} for t in types]}
    if rule.get("minimum") is not None:
        s["minimum"] = rule["minimum"]
    if rule.get("maximum") is not None:
        s["maximum"] = rule["maximum"]
    if rule.get("enum") and rule["type"] == "string":
        s["enum"] = rule["enum"]
    if rule.get("max_items"):
        s["maxItems"] = rule["max_items"]
    if rule["nullable"]:
        s = {"anyOf": [s, {"type": "null"}]}
    return s


def chat_body(models: list[str]) -> dict:
    rules = parameter_rules()
    props = {r["name"]: _schema(r) for r in rules}
    if models:
        props["model"] = {"type": "string", "examples": models}
    return {"type": "object", "required": [r["name"] for r in rules if r["required"]], "properties": props,
            "additionalProperties": False}


def _error() -> dict:
    return {"description": "An error in OpenAI's envelope",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(base: str, models: list[str], task_models: list[TaskModel] = ()) -> dict:
    errors = {str(s): _error() for s in (400, 401, 402, 403, 404, 429, 502, 504)}
    free = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.1.0",
        "info": {"title": "reapi public API", "version": "1",
                 "description": "OpenAI-compatible chat, models and responses; Anthropic-compatible messages; "
                                "the async task gateway (image, video, audio) under /api/v1 with its own "
                                "rk_live_ keys and its error envelope {\"error\": {\"code\", \"message\", "
                                "\"request_id\"}}."},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": f"A chat key (sk-...) from {base}/console/keys"},
                                "taskKey": {"type": "http", "scheme": "bearer",
                                            "description": f"A tasks key (rk_live_...) from {base}/console/keys"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                **openapi_tasks.schemas()}},
        "paths": {
            "/v1/chat/completions": {"post": {
                "summary": "Create a chat completion (stream with `stream: true`)", "operationId": "createChat",
                "requestBody": {"required": True, "content": {"application/json": {"schema": chat_body(models)}}},
                "responses": {"200": {"description": "A chat.completion, or server-sent chat.completion.chunk events",
                                      "content": {"application/json": {"schema": free},
                                                  "text/event-stream": {"schema": {"type": "string"}}}},
                              **errors}}},
            "/v1/models": {"get": {"summary": "The models this key may call", "operationId": "listModels",
                                   "responses": {"200": {"description": "A list of models",
                                                         "content": {"application/json": {"schema": free}}},
                                                 "401": _error()}}},
            "/v1/models/{model}": {"get": {"summary": "One model", "operationId": "getModel",
                                           "parameters": [{"name": "model", "in": "path", "required": True,
                                                           "schema": {"type": "string"}}],
                                           "responses": {"200": {"description": "A model",
                                                                 "content": {"application/json": {"schema": free}}},
                                                         "404": _error()}}},
            "/v1/responses": {"post": {"summary": "Create a response (OpenAI Responses API, OpenAI channels)",
                                       "operationId": "createResponse",
                                       "requestBody": {"required": True,
                                                       "content": {"application/json": {"schema": free}}},
                                       "responses": {"200": {"description": "A response, or its events",
                                                             "content": {"application/json": {"schema": free}}},
                                                     **errors}}},
            "/v1/messages": {"post": {"summary": "Create a message (Anthropic Messages API)",
                                      "operationId": "createMessage",
                                      "requestBody": {"required": True,
                                                      "content": {"application/json": {"schema": free}}},
                                      "responses": {"200": {"description": "A message, or its events",
                                                            "content": {"application/json": {"schema": free}}},
                                                    **errors}}},
            "/pricing": {"get": {"summary": "The rate card (USD per 1M tokens)", "operationId": "pricing",
                                 "security": [],
                                 "responses": {"200": {"description": "The rate card",
                                                       "content": {"application/json": {"schema": free}}}}}},
            **openapi_tasks.paths(list(task_models)),
        },
    }
