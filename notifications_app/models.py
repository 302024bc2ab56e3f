"""Notification targets, the outbox of events and deliveries, and every send attempt.

An event is written once (its `key` is unique, so a retried finish or a second engine adds
nothing), in the transaction of the change it reports; it gets one delivery per target. Engines
send deliveries later, each claimed by a conditional UPDATE, and record every attempt.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from pipelines_app.spec_ops import NOTIFY_EVENTS

EVENT_CHOICES = [(event, event.replace("_", " ")) for event in NOTIFY_EVENTS]


class NotificationChannel(models.Model):
    """A global target: an Apprise URL (Fernet-encrypted, never shown again) and its events."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    url = models.TextField(help_text="Fernet ciphertext of the Apprise URL.")
    scheme = models.CharField(max_length=32, blank=True, default="")
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "notification_channels"
        ordering = ["name"]
        verbose_name = "notification target"

    def __str__(self) -> str:
        return self.name


class NotificationEvent(models.Model):
    """Something worth telling people, written once per `key`."""

    id = models.AutoField(primary_key=True)
    key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=32, choices=EVENT_CHOICES)
    pipeline_name = models.CharField(max_length=255, blank=True, default="", db_index=True)
    # Not a foreign key: the message keeps its run id after retention deleted the run.
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    title = models.CharField(max_length=255, blank=True, default="")
    body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "notification_events"
        ordering = ["-created_at", "-id"]
        verbose_name = "notification"

    def __str__(self) -> str:
        return f"{self.kind} {self.pipeline_name or ''}".strip()


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class NotificationDelivery(models.Model):
    """One event to one target: retried with backoff until sent or out of attempts."""

    id = models.AutoField(primary_key=True)
    event = models.ForeignKey(
        NotificationEvent, on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.ForeignKey(
        NotificationChannel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    secret_key = models.CharField(max_length=255, blank=True, default="")
    target_label = models.CharField(max_length=255)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=128, blank=True, default="")
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "notification_deliveries"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "target_label"], name="delivery_once_per_target"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.target_label} ({self.status})"


class NotificationAttempt(models.Model):
    """One try at sending a delivery, successful or not."""

    id = models.AutoField(primary_key=True)
    delivery = models.ForeignKey(
        NotificationDelivery, on_delete=models.CASCADE, related_name="attempt_rows"
    )
    number = models.IntegerField()
    engine_id = models.CharField(max_length=128, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "notification_attempts"
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {'ok' if self.ok else 'failed'}"

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()
