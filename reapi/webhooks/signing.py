"""Standard Webhooks signatures (https://www.standardwebhooks.com/, version 1).

A message is signed as HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"), sent as
`webhook-signature: v1,<base64 of the MAC>`; several signatures (a secret and the one it
replaced) are space-separated. A secret is "whsec_" + base64 of 24 random bytes; the key is
the decoded bytes, which is what receivers' Standard Webhooks libraries use.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a whsec_ secret."""
    if not secret.startswith(PREFIX):
        raise ValueError("not a whsec_ secret")
    return base64.b64decode(secret[len(PREFIX):], validate=True)


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """'v1,<base64 HMAC-SHA256 of id.timestamp.body>' with the key bytes `secret`."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one v1 signature per secret, space-separated."""
    return " ".join(sign(secret_key(s), msg_id, timestamp, body) for s in secrets_)
