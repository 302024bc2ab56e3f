"""Keep link secrets out of the logs.

One-time login links carry their token in the path (`/login-link/<token>`) and invitation links
in the query string (`/invite?token=…`). Django logs the path of every 4xx/5xx answer
(`django.request`) and the development server logs every request line (`django.server`), so a
refused-but-later-valid link (a blocked user unblocked within 15 minutes, a rate-limited click)
would otherwise sit in the log in usable form. Webhook keys are path segments too
(`/webhooks/<pipeline>/<key>`): a call refused with 400 or 409 was made with the right key.
"""

from __future__ import annotations

import logging
import re

_SECRETS = (
    (re.compile(r"(/login-link/)[^\s?#\"']+"), r"\1[redacted]"),
    (re.compile(r"([?&]token=)[^&\s#\"']+"), r"\1[redacted]"),
    (re.compile(r"(/webhooks/[^/\s?#\"']+/)[^/\s?#\"']+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactLinkTokens(logging.Filter):
    """Rewrite the record's message with link tokens masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
