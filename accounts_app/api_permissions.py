"""DRF permission classes over the role ranks in `accounts_app.roles` (the one role table).

Unauthenticated requests get 401 (DRF raises NotAuthenticated when `has_permission` is False and
the request carries no authenticated user); an authenticated user with too small a role gets 403.
Blocked users never reach here authenticated: both authenticators refuse them.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts_app.roles import Role, role_at_least


def _active_user(request: Request) -> Any:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or getattr(user, "blocked", False):
        return None
    return user


class RoleRequired(BasePermission):
    """Subclass with `minimum_role`; the base lets in any authenticated, unblocked user.

    `safe_minimum_role` (optional) lets reads through with a smaller role, so one view can
    serve GET to READONLY and POST to WRITE.
    """

    minimum_role: str = Role.READONLY
    safe_minimum_role: str | None = None

    def required_role(self, request: Request) -> str:
        if request.method in SAFE_METHODS and self.safe_minimum_role is not None:
            return self.safe_minimum_role
        return self.minimum_role

    def has_permission(self, request: Request, view: Any) -> bool:
        user = _active_user(request)
        if user is None:
            return False
        return role_at_least(getattr(user, "role", ""), self.required_role(request))


class ReadOnlyRole(RoleRequired):
    """Any authenticated, unblocked user, for safe methods only.

    A write method the view does not implement is let through to the view, which answers 405:
    "you may not" (403) would send a WRITE user looking for a role problem that is not there.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method not in SAFE_METHODS and hasattr(view, request.method.lower()):
            return False
        return super().has_permission(request, view)


class WriteRole(RoleRequired):
    minimum_role = Role.WRITE


class ReadOrWrite(RoleRequired):
    """Reads for every role, writes for WRITE and up (one view serving both)."""

    minimum_role = Role.WRITE
    safe_minimum_role = Role.READONLY


class AdminRole(RoleRequired):
    minimum_role = Role.ADMIN


class AnyRole(RoleRequired):
    """Any authenticated, unblocked user, any method (e.g. managing one's own API tokens)."""
