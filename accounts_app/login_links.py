"""One-time login links for bootstrap and recovery (`createadmin`, `loginlink`).

A link is a signed, timestamped token carrying the user id and a fingerprint of the user's
`last_login`. Logging in updates `last_login`, so the link works once; it expires after
LOGIN_LINK_MAX_AGE seconds and is refused for blocked users.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import User

LOGIN_LINK_MAX_AGE = 15 * 60
_SALT = "fastflow.accounts.login-link"


def _fingerprint(user: User) -> str:
    stamp = user.last_login.isoformat() if user.last_login else "never"
    return hashlib.sha256(f"{user.pk}:{stamp}".encode()).hexdigest()[:32]


def login_link_token(*, user: User) -> str:
    return signing.TimestampSigner(salt=_SALT).sign_object(
        {"u": str(user.pk), "f": _fingerprint(user)}
    )


def login_link_url(*, user: User) -> str:
    path = reverse("login_link", kwargs={"token": login_link_token(user=user)})
    return f"{settings.FASTFLOW_BASE_URL}{path}"


def login_link_user(*, token: str) -> User | None:
    """The user a valid, unused, unexpired token names; None otherwise (no reason leaked)."""
    try:
        data = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=LOGIN_LINK_MAX_AGE)
        user = User.objects.get(pk=data["u"])
    except (signing.BadSignature, User.DoesNotExist, KeyError, TypeError, ValueError):
        return None
    if user.blocked or data.get("f") != _fingerprint(user):
        return None
    return user


def login_link_consume(*, token: str) -> User | None:
    """Validate the token and spend it; of two concurrent uses only one gets the user.

    Spending moves `last_login` on, which changes the fingerprint every other copy carries.
    The conditional UPDATE makes that a compare-and-set instead of a read-then-write race.
    """
    user = login_link_user(token=token)
    if user is None:
        return None
    spent = User.objects.filter(pk=user.pk, blocked=False, last_login=user.last_login).update(
        last_login=timezone.now()
    )
    return user if spent == 1 else None
