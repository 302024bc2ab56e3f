from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.utils import timezone

from accounts_app.roles import Role, role_has_module_perms, role_has_perm


class UserManager(BaseUserManager["User"]):
    def create_user(self, username: str, **fields: object) -> User:
        user = self.model(username=username, **fields)
        user.set_unusable_password()
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(username=username)


class User(AbstractBaseUser):
    """A person. There is no password login: `password` is always unusable."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = models.CharField(max_length=150, unique=True)
    email = models.EmailField(max_length=254, blank=True, default="")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READONLY)
    blocked = models.BooleanField(default=False)
    github_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    google_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    avatar_url = models.URLField(max_length=1024, blank=True, default="")
    microsoft_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        db_table = "users"
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    # Derived from role and `blocked`, never stored: one source of truth.
    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return not self.blocked

    @property
    def is_staff(self) -> bool:
        return not self.blocked

    @property
    def is_superuser(self) -> bool:
        return self.role == Role.ADMIN and not self.blocked

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return not self.blocked and role_has_perm(self.role, perm)

    def has_perms(self, perm_list: list[str], obj: object = None) -> bool:
        return all(self.has_perm(p, obj) for p in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        return not self.blocked and role_has_module_perms(self.role, app_label)


class Invitation(models.Model):
    """A single-use invitation; `token` stores the SHA-256 of the secret sent in the link."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recipient_email = models.EmailField(max_length=254)
    token = models.CharField(max_length=128, unique=True)
    is_used = models.BooleanField(default=False)
    expires_at = models.DateTimeField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READONLY)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "invitations"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.recipient_email} ({self.role})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.is_used:
            return "used"
        return "expired" if self.is_expired else "valid"


class ApiToken(models.Model):
    """An API token: the row must exist for its JWT to be accepted (deleting it revokes).

    `token` holds the SHA-256 of the JWT, never the JWT itself (see accounts_app.tokens). The
    table is `sessions`, as in the documented schema; the Python name says what a row is (and
    keeps it apart from Django's own browser sessions, `django_session`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token = models.TextField(unique=True)
    name = models.CharField(max_length=100, blank=True, default="")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token {self.name or self.id} of {self.user_id}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
