"""Outgoing mail (password-reset and verification links) over SMTP: REAPI_SMTP_URL.

smtp://[user:password@]host:port sends in the clear (or upgrades with STARTTLS when the server
offers it); smtps:// connects with TLS. Sent from a worker thread with a 10 s timeout, so a slow
mail server never stalls the event loop. A floor: imports settings only.
"""
from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from reapi.settings import Settings

TIMEOUT_S = 10


class MailError(Exception):
    """The mail could not be handed to the SMTP server."""


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_url)


def _send_sync(settings: Settings, to: str, subject: str, text: str) -> None:
    url = urlsplit(settings.smtp_url or "")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    port = url.port or (465 if url.scheme == "smtps" else 25)
    try:
        if url.scheme == "smtps":
            server: smtplib.SMTP = smtplib.SMTP_SSL(url.hostname or "", port, timeout=TIMEOUT_S,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(url.hostname or "", port, timeout=TIMEOUT_S)
        with server:
            server.ehlo()
            if url.scheme == "smtp" and server.has_extn("starttls"):
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            if url.username:
                server.login(unquote(url.username), unquote(url.password or ""))
            server.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(type(exc).__name__) from None


async def send(settings: Settings, to: str, subject: str, text: str) -> None:
    """Send one plain-text mail. Raises MailError (never with the server's credentials)."""
    await asyncio.to_thread(_send_sync, settings, to, subject, text)
