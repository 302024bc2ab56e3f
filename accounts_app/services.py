"""Account flows: invitations, roles and blocking, API tokens, who a social login becomes.

Every interface (admin, API, allauth adapter, management commands such as `createadmin`, engine
housekeeping) calls these functions; none of them holds account logic of its own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts_app.errors import (
    InvalidInput,
    InvitationInvalid,
    LastAdminError,
    LoginRefused,
)
from accounts_app.models import ApiToken, Invitation, User
from accounts_app.roles import Role
from accounts_app.tokens import token_decode, token_encode, token_hash
from audit_app.context import AuditContext
from audit_app.services import audit_changes, audit_record

INVITATION_DEFAULT_DAYS = 7
INVITATION_MAX_DAYS = 365
TOKEN_MAX_DAYS = 3650
PROVIDER_FIELDS = {"github": "github_id", "google": "google_id"}

REFUSED_NO_ACCESS = "Your account has no access to Fast-Flow. Ask an admin for an invitation."
REFUSED_BLOCKED = "This account is blocked. Ask an admin to unblock it."
REFUSED_LINKED_ELSEWHERE = "This {provider} account is already linked to another Fast-Flow user."
REFUSED_OTHER_ID = "Your account is already linked to a different {provider} account."
INVITATION_NOT_VALID = (
    "This invitation is not valid: it may have expired, been used already, or been sent to a "
    "different email address than the one your login provider reports. "
    "Ask an admin for a new invitation."
)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _normalize_email(email: str) -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput(
            f"{email!r} is not a valid email address", {"email": "Enter a valid email address."}
        ) from exc
    return email


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise InvalidInput(
            f"unknown role {role!r}", {"role": f"Must be one of {', '.join(Role.values)}."}
        )
    return role


def _check_days(days: int, *, maximum: int, field_name: str = "days") -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= maximum:
        raise InvalidInput(
            f"{field_name} must be a whole number from 1 to {maximum}, got {days!r}",
            {field_name: f"Must be a whole number from 1 to {maximum}."},
        )
    return days


# --- Invitations --------------------------------------------------------------------------------


def _invitation_link(raw_token: str) -> str:
    return f"{settings.FASTFLOW_BASE_URL}/invite?{urlencode({'token': raw_token})}"


def invitation_create(
    *,
    email: str,
    role: str,
    created_by: User | None,
    days: int = INVITATION_DEFAULT_DAYS,
    audit: AuditContext | None = None,
) -> tuple[Invitation, str]:
    """Create an invitation; returns it and the link, which is never retrievable again."""
    email = _normalize_email(email)
    _check_role(role)
    _check_days(days, maximum=INVITATION_MAX_DAYS)
    if User.objects.filter(email__iexact=email).exists():
        raise InvalidInput(
            f"a user with the email {email} already exists",
            {"email": "A user with this email already exists."},
        )
    raw = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            recipient_email=email,
            token=_hash(raw),
            role=role,
            expires_at=timezone.now() + timedelta(days=days),
            created_by=created_by,
        )
        audit_record(
            audit=audit,
            action="invitation.create",
            target=invitation,
            details={"email": email, "role": role, "days": days},
        )
    return invitation, _invitation_link(raw)


def invitation_find_valid(*, token: str) -> Invitation | None:
    """The unused, unexpired invitation the raw token names; None otherwise."""
    if not token or len(token) > 256:
        return None
    hashed = _hash(token)
    invitation = Invitation.objects.filter(token=hashed).first()
    # Looking up by hash already hides the token from timing; compare again to be explicit.
    if invitation is None or not constant_time_compare(invitation.token, hashed):
        return None
    if invitation.is_used or invitation.is_expired:
        return None
    return invitation


def invitation_redeem(*, token: str, emails: list[str], user_fields: dict) -> User:
    """Create the invited user and use up the invitation, atomically and exactly once.

    `emails` are the *verified* addresses the login provider reports; one must match the
    recipient (case-insensitive). An unverified address proves nothing: anyone can add any
    address to a GitHub account, so a leaked link would otherwise be usable by a stranger.
    Two concurrent redemptions race on the conditional UPDATE: only one sees a row count of 1,
    the other gets InvitationInvalid.
    """
    invitation = invitation_find_valid(token=token)
    if invitation is None:
        raise InvitationInvalid(INVITATION_NOT_VALID)
    wanted = invitation.recipient_email.lower()
    if wanted not in {e.lower() for e in emails if e}:
        raise InvitationInvalid(INVITATION_NOT_VALID)
    now = timezone.now()
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            id=invitation.id, is_used=False, expires_at__gt=now
        ).update(is_used=True, used_at=now)
        if claimed != 1:
            raise InvitationInvalid(INVITATION_NOT_VALID)
        user = _user_create(
            **{**user_fields, "email": invitation.recipient_email, "role": invitation.role}
        )
        Invitation.objects.filter(id=invitation.id).update(used_by=user)
        audit_record(
            audit=AuditContext(interface="login", actor_type="user", user=user),
            action="invitation.redeem",
            target=invitation,
            details={"user": user.username, "role": invitation.role},
        )
    return user


def invitation_revoke(*, invitation: Invitation, audit: AuditContext | None = None) -> None:
    with transaction.atomic():
        deleted, _ = Invitation.objects.filter(id=invitation.id).delete()
        if deleted:
            audit_record(audit=audit, action="invitation.revoke", target=invitation)


# --- Users: roles and blocking ------------------------------------------------------------------


def _is_only_admin(user: User, *, lock: bool = False) -> bool:
    """Is `user` the only unblocked ADMIN? With lock=True, call inside a transaction.

    Locking the ADMIN rows serializes two admins demoting or blocking each other at the same
    time on PostgreSQL; SQLite's IMMEDIATE transactions serialize writers anyway.
    """
    if user.role != Role.ADMIN or user.blocked:
        return False
    admins = User.objects.filter(role=Role.ADMIN, blocked=False)
    if lock:
        admins = admins.select_for_update()
    return not any(pk != user.pk for pk in admins.values_list("id", flat=True))


def _lock_admins_and_check(user: User, message: str) -> None:
    if _is_only_admin(user, lock=True):
        raise LastAdminError(message)


def user_update_check(
    *, user: User, actor: User | None, role: str | None = None, blocked: bool | None = None
) -> None:
    """Raise what `user_update` would refuse, without writing (lets forms show the error)."""
    if role is not None:
        _check_role(role)
    if blocked and not user.blocked and actor is not None and actor.pk == user.pk:
        raise InvalidInput("you cannot block yourself", {"blocked": "You cannot block yourself."})
    losing_admin = (role is not None and role != Role.ADMIN) or (blocked and not user.blocked)
    if losing_admin and _is_only_admin(user):
        raise LastAdminError(f"{user.username} is the last ADMIN; make another user ADMIN first")


def user_set_role(*, user: User, role: str, audit: AuditContext | None = None) -> User:
    _check_role(role)
    with transaction.atomic():
        if role != Role.ADMIN:
            _lock_admins_and_check(
                user, f"{user.username} is the last ADMIN; make another user ADMIN first"
            )
        before = User.objects.filter(id=user.id).values_list("role", flat=True).first()
        User.objects.filter(id=user.id).update(role=role)
        if before != role:
            audit_record(
                audit=audit,
                action="user.role",
                target=user,
                changes=audit_changes(before={"role": before}, after={"role": role}),
            )
    user.role = role
    return user


def user_block(*, user: User, actor: User | None = None, audit: AuditContext | None = None) -> int:
    """Block the user and revoke all their API tokens; returns how many tokens were revoked.

    Browser sessions stop working too: the auth backends refuse blocked users on every request,
    and a fresh unusable password changes the session auth hash, so sessions opened before the
    block stay dead after an unblock as well (like the revoked tokens).
    """
    if actor is not None and actor.pk == user.pk:
        raise InvalidInput("you cannot block yourself", {"blocked": "You cannot block yourself."})
    password = make_password(None)
    with transaction.atomic():
        _lock_admins_and_check(user, f"{user.username} is the last ADMIN and cannot be blocked")
        User.objects.filter(id=user.id).update(blocked=True, password=password)
        revoked, _ = ApiToken.objects.filter(user_id=user.id).delete()
        audit_record(
            audit=audit,
            action="user.block",
            target=user,
            changes={"blocked": {"old": user.blocked, "new": True}},
            details={"tokens_revoked": revoked},
        )
    user.blocked, user.password = True, password
    return revoked


def user_unblock(*, user: User, audit: AuditContext | None = None) -> User:
    with transaction.atomic():
        changed = User.objects.filter(id=user.id, blocked=True).update(blocked=False)
        if changed:
            audit_record(
                audit=audit,
                action="user.unblock",
                target=user,
                changes={"blocked": {"old": True, "new": False}},
            )
    user.blocked = False
    return user


def user_update(
    *,
    user: User,
    actor: User | None,
    role: str | None = None,
    blocked: bool | None = None,
    email: str | None = None,
    audit: AuditContext | None = None,
) -> User:
    """Apply an admin's edit of email, role and/or blocked through the guarded services, all or
    nothing."""
    with transaction.atomic():
        if email is not None and email != user.email:
            User.objects.filter(id=user.id).update(email=email)
            audit_record(
                audit=audit,
                action="user.update",
                target=user,
                changes=audit_changes(before={"email": user.email}, after={"email": email}),
            )
            user.email = email
        if role is not None and role != user.role:
            user_set_role(user=user, role=role, audit=audit)
        if blocked is True and not user.blocked:
            user_block(user=user, actor=actor, audit=audit)
        elif blocked is False and user.blocked:
            user_unblock(user=user, audit=audit)
    return user


def user_delete(*, user: User, actor: User | None, audit: AuditContext | None = None) -> None:
    """Delete a user (their API tokens go with them); never oneself or the last ADMIN."""
    if actor is not None and actor.pk == user.pk:
        raise InvalidInput("you cannot delete yourself")
    with transaction.atomic():
        _lock_admins_and_check(user, f"{user.username} is the last ADMIN and cannot be deleted")
        deleted, _ = User.objects.filter(id=user.id).delete()
        if deleted:
            audit_record(
                audit=audit,
                action="user.delete",
                target=user,
                details={"role": user.role, "email": user.email},
            )


@dataclass(frozen=True)
class AdminMade:
    user: User
    outcome: str  # created | promoted | found (already an ADMIN)


def user_make_admin(
    *, username: str, email: str = "", audit: AuditContext | None = None
) -> AdminMade:
    """Create an ADMIN, or make an existing user one (bootstrap and recovery: `createadmin`).

    A blocked user is refused: unblocking is a decision of its own. `email`, when given,
    replaces the user's address.
    """
    username = username.strip()
    if not username:
        raise InvalidInput("username must not be empty", {"username": "This field is required."})
    max_length = User._meta.get_field("username").max_length
    if len(username) > max_length:
        message = f"username must be at most {max_length} characters"
        raise InvalidInput(message, {"username": message})
    email = _normalize_email(email) if email.strip() else ""
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(
            username=username,
            defaults={"email": email, "role": Role.ADMIN, "password": make_password(None)},
        )
        if created:
            audit_record(
                audit=audit,
                action="user.create",
                target=user,
                changes={"role": {"old": None, "new": Role.ADMIN}},
            )
            return AdminMade(user=user, outcome="created")
        if user.blocked:
            message = f"user '{username}' is blocked; unblock it first"
            raise InvalidInput(message, {"username": message})
        previous_role = user.role
        outcome = "found" if previous_role == Role.ADMIN else "promoted"
        changes = {"role": Role.ADMIN, **({"email": email} if email else {})}
        User.objects.filter(id=user.id).update(**changes)
        if outcome == "promoted":
            audit_record(
                audit=audit,
                action="user.role",
                target=user,
                changes={"role": {"old": previous_role, "new": Role.ADMIN}},
            )
    for name, value in changes.items():
        setattr(user, name, value)
    return AdminMade(user=user, outcome=outcome)


# --- API tokens ---------------------------------------------------------------------------------


def token_issue(
    *, user: User, days: int | None = None, name: str = "", audit: AuditContext | None = None
) -> tuple[ApiToken, str]:
    """Create a token row and return it with the JWT, which is not stored and never shown again."""
    days = settings.FASTFLOW_TOKEN_DEFAULT_DAYS if days is None else days
    _check_days(days, maximum=TOKEN_MAX_DAYS)
    name = (name or "").strip()
    if len(name) > 100:
        raise InvalidInput(
            "name is longer than 100 characters", {"name": "At most 100 characters."}
        )
    if user.blocked:
        raise InvalidInput(f"{user.username} is blocked and cannot get API tokens")
    now = timezone.now()
    expires_at = now + timedelta(days=days)
    token_id = uuid.uuid4()
    jwt = token_encode(
        user_id=str(user.pk), token_id=str(token_id), issued_at=now, expires_at=expires_at
    )
    with transaction.atomic():
        api_token = ApiToken.objects.create(
            id=token_id,
            user=user,
            token=token_hash(jwt),
            name=name,
            expires_at=expires_at,
            created_at=now,
        )
        audit_record(
            audit=audit,
            action="token.create",
            target=api_token,
            target_repr=f"{user.username}: {name or api_token.id}",
            details={"user": user.username, "name": name, "days": days},
        )
    return api_token, jwt


def token_authenticate(*, token: str) -> ApiToken | None:
    """The live ApiToken a bearer token belongs to, or None.

    Accepted only if the signature verifies, the row named by `jti` exists, is unexpired, stores
    this exact token's hash and belongs to the `sub` user, who is not blocked.
    """
    claims = token_decode(token)
    if claims is None:
        return None
    try:
        token_id = uuid.UUID(str(claims["jti"]))
    except ValueError:
        return None
    api_token = (
        ApiToken.objects.select_related("user")
        .filter(id=token_id, expires_at__gt=timezone.now())
        .first()
    )
    if api_token is None or not constant_time_compare(api_token.token, token_hash(token)):
        return None
    if str(api_token.user_id) != str(claims["sub"]) or api_token.user.blocked:
        return None
    return api_token


def user_access_alive(*, user: User, api_token: ApiToken | None = None) -> bool:
    """Whether a request authenticated earlier may go on (long responses such as log streams):
    the user is not blocked and, for a bearer token, its row still exists and is unexpired."""
    if not User.objects.filter(pk=user.pk, blocked=False).exists():
        return False
    if api_token is None:
        return True
    return ApiToken.objects.filter(pk=api_token.pk, expires_at__gt=timezone.now()).exists()


def tokens_visible_to(*, user: User) -> QuerySet[ApiToken]:
    qs = ApiToken.objects.select_related("user")
    return qs if user.role == Role.ADMIN else qs.filter(user=user)


def token_revoke(
    *, token_id: uuid.UUID | str, actor: User, audit: AuditContext | None = None
) -> bool:
    """Delete a token row (own, or anyone's for an ADMIN); False when there is none to delete.

    A token of someone else looks exactly like a missing one to a non-admin.
    """
    with transaction.atomic():
        api_token = tokens_visible_to(user=actor).filter(id=token_id).first()
        if api_token is None:
            return False
        deleted, _ = ApiToken.objects.filter(id=api_token.id).delete()
        if deleted:
            audit_record(
                audit=audit,
                action="token.revoke",
                target=api_token,
                target_repr=f"{api_token.user.username}: {api_token.name or api_token.id}",
            )
    return bool(deleted)


def tokens_purge_expired() -> int:
    deleted, _ = ApiToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# --- Social login -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderEmail:
    email: str
    verified: bool
    primary: bool = False


@dataclass(frozen=True)
class SocialIdentity:
    """What a provider told us about the person, reduced to what the decision needs."""

    provider: str
    uid: str
    emails: tuple[ProviderEmail, ...] = field(default_factory=tuple)
    username_hint: str = ""
    avatar_url: str = ""

    @property
    def verified_emails(self) -> list[str]:
        return [e.email for e in self.emails if e.verified and e.email]

    @property
    def best_email(self) -> str:
        ordered = sorted(self.emails, key=lambda e: (not e.primary, not e.verified))
        return ordered[0].email if ordered else ""


@dataclass(frozen=True)
class SocialLoginResult:
    user: User
    via: str  # provider_id | verified_email | initial_admin | invitation


_USERNAME_BAD = re.compile(r"[^A-Za-z0-9_.@+-]+")


def _username_base(hint: str) -> str:
    base = _USERNAME_BAD.sub("-", hint.strip()).strip("-.")[:140]
    return base or "user"


def _user_create(**fields: object) -> User:
    """Create a user with a unique username derived from `username`, retrying on races."""
    base = _username_base(str(fields.pop("username", "") or ""))
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        if User.objects.filter(username__iexact=candidate).exists():
            continue
        try:
            with transaction.atomic():
                return User.objects.create_user(username=candidate, **fields)
        except IntegrityError:
            # Another login took the name (or the provider id) between check and insert.
            if User.objects.filter(username=candidate).exists():
                continue
            raise
    raise InvalidInput(f"could not find a free username for {base!r}")


def _refresh_profile(user: User, identity: SocialIdentity) -> User:
    provider_field = PROVIDER_FIELDS[identity.provider]
    updates: dict[str, object] = {provider_field: identity.uid}
    if identity.avatar_url:
        updates["avatar_url"] = identity.avatar_url[:1024]
    if not user.email and identity.best_email:
        updates["email"] = identity.best_email
    User.objects.filter(id=user.id).update(**updates)
    for key, value in updates.items():
        setattr(user, key, value)
    return user


def _initial_admin_applies(identity: SocialIdentity) -> bool:
    wanted = (settings.FASTFLOW_INITIAL_ADMIN_EMAIL or "").strip().lower()
    if not wanted or wanted not in {e.lower() for e in identity.verified_emails}:
        return False
    # Bootstrap only: once an unblocked ADMIN exists, new people come in by invitation.
    return not User.objects.filter(role=Role.ADMIN, blocked=False).exists()


def _existing_user_for(identity: SocialIdentity, provider_field: str) -> SocialLoginResult | None:
    """Rules 1 and 2 of `user_from_social_login`: the account this login already belongs to."""
    user = User.objects.filter(**{provider_field: identity.uid}).first()
    via = "provider_id"
    if user is None and identity.verified_emails:
        email_q = Q()
        for email in identity.verified_emails:
            email_q |= Q(email__iexact=email)
        matches = list(User.objects.filter(email_q)[:2])
        # Never re-point an account already linked to a different id at this provider.
        if len(matches) == 1 and getattr(matches[0], provider_field) in (None, ""):
            user, via = matches[0], "verified_email"
    if user is None:
        return None
    if user.blocked:
        raise LoginRefused(REFUSED_BLOCKED, reason="blocked")
    return SocialLoginResult(_refresh_profile(user, identity), via)


def user_from_social_login(
    *,
    identity: SocialIdentity,
    invitation_token: str | None = None,
    audit: AuditContext | None = None,
) -> SocialLoginResult:
    """Decide who a completed provider login is (see `_social_login_decide`); the login and a
    refused login are recorded in the audit log."""
    try:
        result = _social_login_decide(identity=identity, invitation_token=invitation_token)
    except LoginRefused as exc:
        audit_record(
            audit=audit,
            action="user.login_failed",
            target_type="accounts_app.user",
            target_repr=f"{identity.provider}: {identity.best_email or identity.uid}"[:255],
            details={"provider": identity.provider, "reason": exc.reason},
        )
        raise
    user_login_record(user=result.user, audit=audit, via=f"{identity.provider} ({result.via})")
    return result


def user_login_record(*, user: User, audit: AuditContext | None, via: str) -> None:
    """A successful login (provider or one-time link)."""
    context = audit or AuditContext(interface="login", actor_type="user")
    context = AuditContext(
        interface=context.interface,
        actor_type="user",
        user=user,
        name=user.username,
        ip=context.ip,
    )
    audit_record(audit=context, action="user.login", target=user, details={"via": via})


def _social_login_decide(
    *, identity: SocialIdentity, invitation_token: str | None = None
) -> SocialLoginResult:
    """Decide who a completed provider login is; the first rule that matches wins.

    1. a user already linked to this provider id;
    2. exactly one user whose email matches a *verified* provider email (the provider is linked);
    3. FASTFLOW_INITIAL_ADMIN_EMAIL with a verified email, while no ADMIN exists (creates one);
    4. a valid invitation whose recipient matches a verified provider email (creates the user);
    otherwise LoginRefused. Blocked users are refused whichever rule finds them.
    """
    provider_field = PROVIDER_FIELDS.get(identity.provider)
    if provider_field is None or not identity.uid:
        raise LoginRefused(REFUSED_NO_ACCESS, reason="unknown_provider")

    existing = _existing_user_for(identity, provider_field)
    if existing is not None:
        return existing

    verified = identity.verified_emails
    base_fields = {
        "username": identity.username_hint or identity.best_email.partition("@")[0],
        provider_field: identity.uid,
        "avatar_url": identity.avatar_url[:1024],
    }
    if _initial_admin_applies(identity):
        admin_email = next(
            e
            for e in verified
            if e.lower() == settings.FASTFLOW_INITIAL_ADMIN_EMAIL.strip().lower()
        )
        user = _user_create(**base_fields, email=admin_email, role=Role.ADMIN)
        return SocialLoginResult(user, "initial_admin")

    if invitation_token:
        try:
            user = invitation_redeem(
                token=invitation_token,
                emails=verified,
                user_fields=base_fields,
            )
        except InvitationInvalid as exc:
            raise LoginRefused(str(exc), reason="invitation_invalid") from exc
        return SocialLoginResult(user, "invitation")

    raise LoginRefused(REFUSED_NO_ACCESS, reason="no_access")


def user_link_provider(*, user: User, identity: SocialIdentity) -> User:
    """Link one more provider account to a logged-in user (updates `user` in place)."""
    provider_field = PROVIDER_FIELDS.get(identity.provider)
    if provider_field is None or not identity.uid:
        raise LoginRefused(REFUSED_NO_ACCESS, reason="unknown_provider")
    label = identity.provider.capitalize().replace("Github", "GitHub")
    if user.blocked:
        raise LoginRefused(REFUSED_BLOCKED, reason="blocked")
    if User.objects.filter(**{provider_field: identity.uid}).exclude(id=user.id).exists():
        raise LoginRefused(REFUSED_LINKED_ELSEWHERE.format(provider=label), reason="linked_other")
    current = getattr(user, provider_field)
    if current not in (None, "", identity.uid):
        raise LoginRefused(REFUSED_OTHER_ID.format(provider=label), reason="other_id")
    return _refresh_profile(user, identity)
