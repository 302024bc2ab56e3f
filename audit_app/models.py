"""The audit log: who did what, from where, and which fields changed. Rows are only ever
written by `audit_app.services.audit_record`, in the transaction of the change."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ActorType(models.TextChoices):
    USER = "user"
    TOKEN = "token"  # noqa: S105 - an actor kind, not a credential
    WEBHOOK = "webhook"
    SCHEDULE = "schedule"
    ENGINE = "engine"
    SYSTEM = "system"


class Interface(models.TextChoices):
    ADMIN = "admin"
    API = "api"
    WEBHOOK = "webhook"
    COMMAND = "command"
    ENGINE = "engine"
    LOGIN = "login"
    SYSTEM = "system"


class AuditEntry(models.Model):
    """One action; `FIELDS` is what the admin and the API show, in this order."""

    id = models.AutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # Not a foreign key: the record of what a user did outlives the user.
    actor_user_id = models.UUIDField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=255, blank=True, default="")
    interface = models.CharField(max_length=16, choices=Interface.choices)
    ip = models.CharField(max_length=45, null=True, blank=True)  # noqa: DJ001 - unknown ≠ ""
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=255, blank=True, default="")
    target_repr = models.CharField(max_length=255, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "audit_log"
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    FIELDS = (
        "created_at",
        "actor_type",
        "actor_user_id",
        "actor_name",
        "interface",
        "ip",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "changes",
        "details",
    )

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"
