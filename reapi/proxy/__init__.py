"""The call pipeline: the stages of one proxied call, shared by every /v1 call route.

admit (admission: key, model and pool, limits, the hold) -> forward (upstream: the one upstream POST, no
redirects, the Watch that ends it when the client leaves or the deadline passes) -> relay (stream: an SSE
stream through a StreamConverter; whole: one JSON answer) -> settle (settle: charge on usage, or release),
with `serve` (pipeline) driving it, answering errors in the route's format (`Wire`) and writing the one
request log line. A route (reapi.api.chat, reapi.api.messages, reapi.api.responses) parses and validates its
body, picks the adapter, converter and terminator, and hands the rest to this package; responses holds the
Responses API's own settlement rules (background billing, stored-response forwarding).
May import reapi.relay, reapi.billing, reapi.limits, reapi.catalog, reapi.errors, reapi.metrics, reapi.asgi,
reapi.store (responses only: the stored-response table) and reapi.gateway (the services object); never
reapi.api.
"""
