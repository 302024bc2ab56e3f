"""The one error contract of the services: every error a service raises on purpose is a
`ServiceError`, and every interface maps it the same way (the API's exception handler, the
webhook view; the admin and commands show its message).

The site defines the contract and knows no app: each app subclasses `ServiceError` in its own
`errors.py` and sets `code` and `http_status` there, so a new error needs no change here.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal a caller can act on.

    - `code`: a stable machine-readable identifier, the `error` of an API error body;
    - `http_status`: the status an HTTP interface answers with (400 bad input, 404 unknown
      target, 409 the current state forbids it, 503 a dependency is down);
    - `fields`: field → message, for errors about particular inputs (dotted for nested ones);
    - `headers`: extra response headers an HTTP interface sends (e.g. `Retry-After`).

    The message (`str(exc)`) is shown to people: specific, and free of internals.
    """

    code: str = "error"
    http_status: int = 400

    def __init__(
        self,
        message: str,
        fields: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.fields: dict[str, str] = dict(fields or {})
        self.headers: dict[str, str] = dict(headers or {})
