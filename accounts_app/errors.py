"""Errors the account services raise; every interface maps them to its own response."""

from __future__ import annotations


class AccountError(Exception):
    """Base class. `code` is a stable machine-readable identifier for API error bodies."""

    code = "account_error"


class InvalidInput(AccountError):
    """Bad input for an account operation. `fields` maps field → message."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class LastAdminError(AccountError):
    """The change would leave no unblocked ADMIN."""

    code = "last_admin"


class InvitationInvalid(AccountError):
    """Unknown, used or expired invitation, or the email does not match.

    The message is deliberately the same for every cause shown to the person logging in, so the
    page does not tell a stranger which invitations or emails exist.
    """

    code = "invitation_invalid"


class LoginRefused(AccountError):
    """Nobody let this social login in (no match, no invitation, or a blocked account)."""

    code = "login_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
