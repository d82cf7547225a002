"""Admission: the key, the model and its channel pool, the rate limits and the hold (route-independent)."""
from __future__ import annotations

import asyncio
import time

from reapi import metrics
from reapi.asgi import bearer, headers_list
from reapi.billing.ledger import HoldRequest, HoldResult
from reapi.billing.money import format_usd
from reapi.billing.pricing import affordable_output, cost_nano
from reapi.catalog import ApiKey, Channel, Price
from reapi.errors import GatewayError, bad_request
from reapi.gateway import Gateway
from reapi.limits import Decision, Rule
from reapi.proxy.call import Call
from reapi.proxy.settle import release_orphan
from reapi.store.cache import hash_key


def find_key(gw: Gateway, secret: str | None) -> ApiKey | None:
    """The live key of a client secret (None: none sent, unknown, revoked or expired). The
    expiry is checked here, on the snapshot's copy: no store query on the hot path."""
    key = gw.catalog.snapshot.keys.get(hash_key(secret)) if secret else None
    if key is not None and key.expires_at is not None and key.expired(int(time.time() * 1000)):
        return None
    return key


def authenticate(gw: Gateway, scope: dict) -> ApiKey:
    """OpenAI-style auth: `Authorization: Bearer KEY`."""
    secret = bearer(scope)
    if secret is None:
        raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer sk-...'.",
                           type="invalid_request_error", code="invalid_api_key")
    key = find_key(gw, secret)
    if key is None:
        raise GatewayError(401, "Invalid API key: it is unknown, expired or has been revoked.",
                           type="invalid_request_error", code="invalid_api_key")
    return key


def resolve_model(gw: Gateway, key: ApiKey, group: str, model: str) -> tuple[Price, list[list[Channel]]]:
    snap = gw.catalog.snapshot
    if group not in snap.groups:
        raise bad_request(f"Unknown group '{group}'.", param="group", code="invalid_group")
    if key.groups is not None and group not in key.groups:
        raise GatewayError(403, f"This API key may not use group '{group}'.", type="permission_error",
                           param="group", code="group_not_allowed")
    if key.models is not None and model not in key.models:
        raise GatewayError(403, f"This API key may not use model '{model}'.", type="permission_error",
                           param="model", code="model_not_allowed")
    price = snap.prices.get(model)
    tiers = snap.pools.get((group, model))
    if price is None or not tiers:
        raise GatewayError(404, f"The model '{model}' does not exist or is not served in group '{group}'.",
                           type="invalid_request_error", param="model", code="model_not_found")
    return price, tiers


def limit_rules(gw: Gateway, key: ApiKey, group: str) -> list[Rule]:
    g = gw.catalog.snapshot.groups[group]
    rules = []
    if g.rpm is not None or g.tpm is not None:
        rules.append(Rule(f"acct:{group}:{key.account_id}", g.rpm, g.tpm))
    if g.total_rpm is not None or g.total_tpm is not None:
        rules.append(Rule(f"group:{group}", g.total_rpm, g.total_tpm))
    if key.rpm is not None or key.tpm is not None:
        rules.append(Rule(f"key:{key.id}", key.rpm, key.tpm))
    return rules


def rate_limit_error(decision: Decision) -> GatewayError:
    kind = decision.kind or "requests"
    wait = max(1, int(decision.retry_after_s + 0.999))
    return GatewayError(
        429, f"Rate limit reached for {kind} in this group; retry after {wait}s.", type=kind,
        code="rate_limit_exceeded", headers={**decision.headers, "retry-after": str(wait)})


async def reserve(call: Call, asked: int) -> None:
    """The end of every route's admit: rate limits, then the hold, then the headers they add.

    Admits prompt + cap x n tokens against the key's and group's limits (429 when refused), places
    the hold (402 when the balance cannot pay; it may lower call.send_cap to what the balance pays)
    and announces a cap sent upstream below `asked`, the cap the client asked for, in
    x-reapi-output-cap."""
    gw = call.gw
    call.rules = limit_rules(gw, call.key, call.group)
    if call.rules:
        call.admitted_tokens = call.prompt_tokens + call.cap * call.n
        decision = await gw.limiter.admit(call.rules, call.admitted_tokens)
        call.headers += headers_list(decision.headers.items())
        if not decision.allowed:
            metrics.rate_limited(call.group, decision.kind or "requests")
            raise rate_limit_error(decision)
    call.hold = await place_hold(call)
    call.headers.append((b"x-reapi-balance-usd", format_usd(call.hold.balance_after).encode()))
    if call.send_cap is not None and call.send_cap < asked:
        call.headers.append((b"x-reapi-output-cap", str(call.send_cap).encode()))


async def place_hold(call: Call) -> HoldResult:
    price, prompt, n = call.price, call.prompt_tokens, call.n
    min_out = call.gw.settings.min_output_tokens

    def resize(available: int) -> int | None:
        per_choice = affordable_output(price, prompt, available) // n
        if per_choice < min(min_out, call.cap):
            return None
        call.send_cap = min(call.cap, per_choice)  # lower the cap sent upstream to what the balance pays
        return cost_nano(price, prompt, call.send_cap * n)

    req = HoldRequest(
        request_id=call.request_id, account_id=call.key.account_id, key_id=call.key.id,
        key_spend_limit_nano=call.key.spend_limit_nano, model=call.model, group=call.group,
        channel_id=call.channel.id, stream=call.stream, worst_nano=cost_nano(price, prompt, call.cap * n),
        resize=resize)
    gw = call.gw

    def orphaned(result: HoldResult) -> None:  # our request died while the hold was being written
        if result.ok:
            asyncio.get_running_loop().create_task(release_orphan(call, result))

    result: HoldResult = await gw.writer.submit(req, orphaned)
    if not result.ok:
        if call.admitted_tokens:
            await gw.limiter.adjust(call.rules, -call.admitted_tokens)
        if result.refusal == "key_spend_limit_reached":
            raise GatewayError(402, "This API key has reached its spend limit.", type="insufficient_quota",
                               code="key_spend_limit_reached", headers={"x-should-retry": "false"})
        raise GatewayError(402, "Insufficient balance for this request; top up the account to continue.",
                           type="insufficient_quota", code="insufficient_balance",
                           headers={"x-should-retry": "false"})
    metrics.hold_opened()
    return result
