"""Errors the notification services raise; every interface maps them to its own response."""

from __future__ import annotations


class NotificationError(Exception):
    """Base class. `code` is a stable machine-readable identifier for API error bodies."""

    code = "notification_error"


class InvalidNotificationInput(NotificationError):
    """A target name, URL or event list that cannot be used. `fields` maps field → message."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}
