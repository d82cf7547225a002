"""Upstream types and what surrounds them: the Adapter/StreamConverter interfaces (base), one adapter per
channel type (openai, anthropic/; openai_responses for /v1/responses on openai channels,
anthropic/responses and anthropic/responses_stream for it on anthropic channels), the registry of
them (registry), channel selection and health (select,
health), upstream usage checks and output scrubbing (usage, scrub) and the admin's channel probe (probe).
Adapters are pure transformations; the sockets belong to the call pipeline (reapi.proxy). May import
reapi.catalog, reapi.errors, reapi.billing, reapi.metrics and reapi.settings; never reapi.api, reapi.proxy
or reapi.gateway.
"""
