"""Errors the notification services raise; every interface maps them through the one
`ServiceError` contract (fastflow_site/errors.py)."""

from __future__ import annotations

from fastflow_site.errors import ServiceError


class NotificationError(ServiceError):
    """Base class of the notification services' errors."""

    code = "notification_error"


class InvalidNotificationInput(NotificationError):
    """A target name, URL or event list that cannot be used. `fields` maps field → message."""

    code = "invalid"
    http_status = 400
