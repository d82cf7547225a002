"""The /v1 routes, each a thin route over the call pipeline (reapi.proxy): chat (OpenAI Chat Completions),
messages (Anthropic Messages), responses (OpenAI Responses and stored responses, with responses_validation),
models (the key's model list); request (auth + one body read and parse) and
validation (the OpenAI body's checks). A route parses and validates its body, chooses the channel, adapter,
converter and terminator, and gives the pipeline its error format (reapi.proxy.pipeline.Wire). May import
reapi.proxy, reapi.relay, reapi.asgi, reapi.billing, reapi.catalog, reapi.errors and reapi.gateway.
"""
