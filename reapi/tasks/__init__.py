"""The async task gateway: image, video and audio generation submitted once, held, polled, settled.

Its own keys (rk_live_, the "tasks" workspace) and wallet ("tasks"), over the same ledger, store
and channel health as chat. Floors of the wing (no HTTP): errors.py (the 5-digit error codes),
params.py (the JSON Schema subset a model's body is checked against), pricing.py (SKU price of a
body), lifecycle.py (submit and terminal transitions, each one transaction with its ledger entries),
queries.py (reads), outputs.py (where outputs are stored), providers/ (one pure module per upstream
type), worker.py (claims, submits, polls). The wing itself: api.py, the /api/v1 routes.

May import: billing, relay (scrub, select, health), store, catalog, operations (task models),
reapi.media and reapi.webhooks. Nothing here is imported by the chat path: app.py mounts api.py
lazily, on the first /api/v1 request.
"""
