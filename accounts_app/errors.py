"""Errors the account services raise; every interface maps them through the one
`ServiceError` contract (fastflow_site/errors.py)."""

from __future__ import annotations

from fastflow_site.errors import ServiceError


class AccountError(ServiceError):
    """Base class of the account services' errors."""

    code = "account_error"


class InvalidInput(AccountError):
    """Bad input for an account operation. `fields` maps field → message."""

    code = "invalid"


class LastAdminError(AccountError):
    """The change would leave no unblocked ADMIN."""

    code = "last_admin"
    http_status = 409


class InvitationInvalid(AccountError):
    """Unknown, used or expired invitation, or the email does not match.

    The message is deliberately the same for every cause shown to the person logging in, so the
    page does not tell a stranger which invitations or emails exist.
    """

    code = "invitation_invalid"


class LoginRefused(AccountError):
    """Nobody let this social login in (no match, no invitation, or a blocked account)."""

    code = "login_refused"
    http_status = 403

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
