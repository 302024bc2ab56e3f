"""Sending one message to one Apprise URL: parsed, bounded by a timeout, behind the SSRF
guard, with the reason of a failure captured from Apprise's log (it reports, never raises)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import apprise
from django.conf import settings

from notifications_app.ssrf import BlockedAddress, Policy, guarded

MAX_ERROR_CHARS = 2000


class SendFailed(Exception):
    """The message did not go out; the text says why (never the URL's credentials)."""


def apprise_plugin(url: str) -> apprise.plugins.NotifyBase | None:
    """The Apprise service for `url`, or None when Apprise does not understand it."""
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # noqa: BLE001 - a plugin's constructor may raise on odd input
        return None


def url_scheme(url: str) -> str:
    return urlsplit(url.strip()).scheme.lower()[:32]


def _scrub(text: str, url: str) -> str:
    """Remove the URL and its user/password parts from an error text."""
    parts = urlsplit(url)
    for secret in (url, parts.password, parts.username, parts.path.strip("/")):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:MAX_ERROR_CHARS]


def apprise_send(*, url: str, title: str, body: str, timeout: float | None = None) -> None:
    """Send one message or raise SendFailed."""
    plugin = apprise_plugin(url)
    if plugin is None:
        raise SendFailed(f"not an Apprise URL Apprise can use (scheme {url_scheme(url)!r})")
    limit = float(timeout if timeout is not None else settings.FASTFLOW_NOTIFY_TIMEOUT_SECONDS)
    # Every plugin connects through URLBase's timeouts (HTTP: connect/read, SMTP: the socket).
    plugin.socket_connect_timeout = limit
    plugin.socket_read_timeout = limit
    if "format" not in parse_qs(urlsplit(url).query):
        # Our messages are plain lines (log lines among them); Apprise would otherwise turn
        # them into HTML for email and lose the line breaks in the text part.
        plugin.notify_format = apprise.NotifyFormat.TEXT
    policy = Policy.from_entries(settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS)
    try:
        with (
            apprise.LogCapture(level=logging.DEBUG) as captured,
            guarded(policy),
        ):
            ok = plugin.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
    except BlockedAddress as exc:
        raise SendFailed(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any plugin error is this delivery's failure
        raise SendFailed(_scrub(f"{exc.__class__.__name__}: {exc}", url)) from None
    if ok:
        return
    raise SendFailed(_scrub(_reason(captured.getvalue()), url))


def _reason(log: str) -> str:
    """The plugin's warning plus the low-level cause Apprise logs at debug level."""
    messages = [line.split(" - ", 2)[-1] for line in log.splitlines() if " - " in line]
    blocked = [m for m in messages if "refused to connect" in m]
    if blocked:
        return "refused to connect" + blocked[-1].split("refused to connect", 1)[-1].rstrip("\"')")
    warnings = [
        line.split(" - ", 2)[-1]
        for line in log.splitlines()
        if " - WARNING - " in line or " - ERROR - " in line
    ]
    causes = [m for m in messages if "Exception:" in m or "Response Details" in m]
    picked = [*warnings[-2:], *causes[-1:]]
    return " | ".join(picked) or "the target did not accept the message"
