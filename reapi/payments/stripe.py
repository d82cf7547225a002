"""Stripe Checkout top-ups: a `topups` row (pending) and a Checkout Session for it; the webhook
event that says it was paid credits the wallet, exactly once per session.

Creating: the row first (its id goes into the session's metadata and idempotency key), then the
session through the official `stripe` package pointed at REAPI_STRIPE_API_BASE (no redirect
followed, no proxy from the environment), then the session id on the row. The customer is sent to
the session's URL; nothing is credited on the way back from it.

Crediting (`handle_event`): the `Stripe-Signature` header is checked on the raw body (HMAC-SHA256
of "t.body" with the endpoint's secret, by the stripe package; at most 300 s old, and not from the
future). `checkout.session.completed` with payment_status "paid" and
`checkout.session.async_payment_succeeded` credit the amount of OUR row (the event's amount_total
and currency must agree with it, else nothing is credited and the row is marked `mismatch`). One
transaction: the row's conditional pending -> paid UPDATE, the event's row in `stripe_events`
(unique event id, session id and top-up id) and the ledger credit (ref "topup_<id>"). The answer is
2xx only once that transaction committed; a failure answers 500 so Stripe delivers again.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import stripe as stripe_sdk
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.billing.ledger import Credit
from reapi.billing.ledger import run as ledger_run
from reapi.billing.money import NANO_PER_USD, format_usd
from reapi.errors import GatewayError, bad_request
from reapi.settings import Settings
from reapi.store import schema

log = logging.getLogger("reapi.payments.stripe")
T = schema.topups
E = schema.stripe_events
TOLERANCE_S = 300
NANO_PER_CENT = NANO_PER_USD // 100
CREDITING = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
CLOSING = {"checkout.session.async_payment_failed": "failed", "checkout.session.expired": "expired"}
_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
_URL = re.compile(r"^https://[\x21-\x7e]{1,2000}$")
PRESETS_USD = (10, 20, 50, 100)  # offered on the top-up page, within the configured range


def now_ms() -> int:
    return int(time.time() * 1000)


def enabled(settings: Settings) -> bool:
    return bool(settings.stripe_secret_key and settings.stripe_webhook_secret)


def amount_range(settings: Settings) -> tuple[int, int]:
    """The smallest and largest top-up in whole USD."""
    return settings.topup_min_usd, max(settings.topup_min_usd, settings.topup_max_usd)


def presets(settings: Settings) -> list[int]:
    lo, hi = amount_range(settings)
    return [p for p in PRESETS_USD if lo <= p <= hi] or [lo]


def parse_amount(settings: Settings, value: object) -> int:
    """A top-up amount in USD ("25", "25.50": whole cents) within the range -> nano-USD; else 400."""
    lo, hi = amount_range(settings)
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _AMOUNT.match(text):
        raise bad_request("amount_usd must be an amount in USD with at most 2 decimals, such as 25.00.",
                          param="amount_usd")
    d = Decimal(text)
    if not lo <= d <= hi:
        raise bad_request(f"amount_usd must be between {lo} and {hi} USD.", param="amount_usd")
    return int(d * 100) * NANO_PER_CENT


PROVIDER_ERROR = GatewayError(502, "The payment provider could not start the payment; nothing was charged. "
                                   "Please try again later.", type="upstream_error", code="payment_provider_error")


@dataclass(frozen=True)
class Checkout:
    topup_id: int
    session_id: str
    url: str


def _client(settings: Settings) -> Any:
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: REAPI_STRIPE_API_BASE is the way
    session.max_redirects = 0  # a redirect is an error, never followed
    http = stripe_sdk.RequestsClient(timeout=(10, 30), session=session)
    return stripe_sdk.StripeClient(settings.stripe_secret_key or "", base_addresses={"api": settings.stripe_api_base},
                                   http_client=http, max_network_retries=2)


def _create_session(settings: Settings, params: dict, idempotency_key: str) -> Any:
    return _client(settings).v1.checkout.sessions.create(params=params,  # type: ignore[arg-type]
                                                         options={"idempotency_key": idempotency_key})


def session_params(topup_id: int, account_id: int, wallet: str, amount_nano: int, public_url: str) -> dict:
    base = public_url.rstrip("/")
    return {
        "mode": "payment",
        "client_reference_id": f"reapi-{account_id}-{topup_id}",
        "metadata": {"account_id": str(account_id), "wallet": wallet, "topup_id": str(topup_id)},
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": amount_nano // NANO_PER_CENT,
            "product_data": {"name": f"Top-up of the {wallet} balance"}}}],
        "success_url": f"{base}/console/topup?paid={topup_id}",
        "cancel_url": f"{base}/console/topup?cancelled={topup_id}",
    }


async def start_checkout(engine: AsyncEngine, settings: Settings, account_id: int, wallet: str, amount_nano: int,
                         public_url: str) -> Checkout:
    """A pending top-up and its Checkout Session; the customer goes to `url`. Raises
    GatewayError(502, payment_provider_error) when Stripe fails (the row is marked failed)."""
    if not enabled(settings):
        raise GatewayError(404, "Stripe top-ups are not enabled on this gateway.", code="not_found")
    if wallet not in schema.WALLETS:
        raise bad_request("wallet must be chat or tasks.", param="wallet")
    async with engine.begin() as conn:
        topup_id = (await conn.execute(insert(T).values(
            account_id=account_id, wallet=wallet, amount_nano=amount_nano, method="stripe", status="pending",
            created_at=now_ms()).returning(T.c.id))).scalar_one()
    params = session_params(topup_id, account_id, wallet, amount_nano, public_url)
    try:
        session = (await asyncio.to_thread(_create_session, settings, params, f"reapi-topup-{topup_id}")).to_dict()
        sid, url = session.get("id"), session.get("url")
        if not (isinstance(sid, str) and _SESSION_ID.match(sid) and isinstance(url, str) and _URL.match(url)):
            raise ValueError("the Checkout Session has no valid id or https url")
    except (stripe_sdk.StripeError, ValueError, OSError) as exc:
        # never the exception's text: it may quote the request (and the key's prefix)
        log.warning("Stripe Checkout Session for top-up %d failed: %s", topup_id, type(exc).__name__)
        async with engine.begin() as conn:
            await conn.execute(update(T).where(T.c.id == topup_id, T.c.status == "pending")
                               .values(status="failed", completed_at=now_ms()))
        raise PROVIDER_ERROR from None
    async with engine.begin() as conn:
        await conn.execute(update(T).where(T.c.id == topup_id, T.c.session_id.is_(None)).values(session_id=sid))
    return Checkout(topup_id, sid, url)


# --- the webhook ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """The answer to one delivery: its status (2xx only once it is durably handled) and a word."""
    status: int
    result: str  # credited | duplicate | ignored | mismatch | refused | failed


def verify(settings: Settings, payload: bytes, header: str | None, now: float | None = None) -> bool:
    """The signature is ours and at most TOLERANCE_S old (and not that far in the future)."""
    secret = settings.stripe_webhook_secret
    if not secret or not header or len(header) > 4096:
        return False
    try:
        text = payload.decode("utf-8")
        stripe_sdk.WebhookSignature.verify_header(text, header, secret, TOLERANCE_S)
        stamps = [p.split("=", 1)[1] for p in header.split(",") if p.startswith("t=")]
        t = int(stamps[0])
    except (stripe_sdk.SignatureVerificationError, UnicodeDecodeError, ValueError, IndexError):
        return False
    return t <= (now if now is not None else time.time()) + TOLERANCE_S


def _str(v: object, most: int = 255) -> str | None:
    return v if isinstance(v, str) and 0 < len(v) <= most else None


async def handle_event(engine: AsyncEngine, settings: Settings, payload: bytes, header: str | None) -> Outcome:
    if not verify(settings, payload, header):
        log.warning("Stripe webhook refused: bad or stale signature")
        return Outcome(400, "refused")
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Outcome(400, "refused")
    if not isinstance(event, dict):
        return Outcome(400, "refused")
    event_id, kind = _str(event.get("id")), _str(event.get("type"), 64)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if event_id is None or not _EVENT_ID.match(event_id) or kind is None or not isinstance(obj, dict):
        return Outcome(400, "refused")
    if kind not in CREDITING and kind not in CLOSING:
        return Outcome(200, "ignored")
    sid = _str(obj.get("id"))
    if sid is None or not _SESSION_ID.match(sid):
        return Outcome(400, "refused")
    try:
        return await _apply(engine, event_id, kind, sid, obj)
    except SQLAlchemyError as exc:  # never its text: it carries the statement's parameters
        log.error("Stripe event %s for session %s not recorded (the store failed: %s); Stripe will deliver it "
                  "again", event_id, sid, type(exc).__name__)
        return Outcome(500, "failed")


async def _topup_of(conn: Any, sid: str, obj: dict) -> dict | None:
    """Our row for the session: by the session id we stored, else by the metadata's topup_id (an
    event may overtake the update that stores the session id); never one of another session."""
    row = (await conn.execute(select(T).where(T.c.session_id == sid))).mappings().first()
    if row is None:
        meta = obj.get("metadata")
        ref = meta.get("topup_id") if isinstance(meta, dict) else None
        if isinstance(ref, str) and ref.isdigit() and len(ref) < 10:
            row = (await conn.execute(select(T).where(T.c.id == int(ref)))).mappings().first()
            if row is not None and row["session_id"] not in (None, sid):
                return None
    if row is None or row["method"] != "stripe":
        return None
    return dict(row)


def _agrees(row: dict, obj: dict) -> bool:
    """The event's amount, currency and metadata (account, wallet, top-up) are those of our row."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    total = obj.get("amount_total")
    return (type(total) is int and total * NANO_PER_CENT == row["amount_nano"]
            and obj.get("currency") == "usd"
            and meta.get("account_id") == str(row["account_id"]) and meta.get("wallet") == row["wallet"]
            and meta.get("topup_id") == str(row["id"]))


async def _apply(engine: AsyncEngine, event_id: str, kind: str, sid: str, obj: dict) -> Outcome:
    async with engine.begin() as conn:
        row = await _topup_of(conn, sid, obj)
        if row is None:
            log.warning("Stripe event %s (%s) names session %s, which is no top-up of ours: ignored", event_id,
                        kind, sid)
            return Outcome(200, "ignored")
        if row["status"] != "pending":
            return Outcome(200, "duplicate" if row["status"] == "paid" else "ignored")
        pending = (T.c.id == row["id"], T.c.status == "pending")
        if kind in CLOSING:
            await conn.execute(update(T).where(*pending).values(status=CLOSING[kind], session_id=sid,
                                                                completed_at=now_ms()))
            return Outcome(200, "ignored")
        if obj.get("payment_status") != "paid":  # e.g. a bank debit still on its way: its own event follows
            return Outcome(200, "ignored")
        if not _agrees(row, obj):
            log.warning("Stripe event %s for top-up %d does not match it (amount_total %r %r, ours %s USD): "
                        "not credited", event_id, row["id"], obj.get("amount_total"), obj.get("currency"),
                        format_usd(row["amount_nano"]))
            await conn.execute(update(T).where(*pending).values(status="mismatch", session_id=sid,
                                                                completed_at=now_ms()))
            return Outcome(200, "mismatch")
    try:
        async with engine.begin() as conn:
            ts = now_ms()
            won = (await conn.execute(update(T).where(*pending).values(status="paid", session_id=sid,
                                                                       completed_at=ts))).rowcount
            if won != 1:  # another delivery of this session committed first
                return Outcome(200, "duplicate")
            await conn.execute(insert(E).values(event_id=event_id, session_id=sid, topup_id=row["id"], type=kind,
                                                created_at=ts))
            new = await ledger_run(conn, Credit(row["account_id"], row["amount_nano"], "Stripe top-up",
                                                wallet=row["wallet"], ref=f"topup_{row['id']}"))
            if new is None:
                raise GatewayError(500, f"account {row['account_id']} has no {row['wallet']} wallet")
    except IntegrityError:
        async with engine.connect() as conn:
            status = (await conn.execute(select(T.c.status).where(T.c.id == row["id"]))).scalar()
        if status == "paid":  # a concurrent delivery of the same session or event won
            return Outcome(200, "duplicate")
        raise
    log.info("Stripe top-up %d credited: %s USD to account %d (%s wallet)", row["id"], format_usd(row["amount_nano"]),
             row["account_id"], row["wallet"])
    return Outcome(200, "credited")

