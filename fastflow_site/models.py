"""Request throttling state every web process shares: the database is the one thing all of
them (on one host or many) already have in common, so no extra service has to be configured
for the limits to hold. See `fastflow_site.throttle`."""

from __future__ import annotations

import uuid

from django.db import models


class RateLimitBucket(models.Model):
    """How many requests one client (`key`) made in one fixed window of a `scope`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    window_start = models.DateTimeField()
    count = models.IntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "rate_limit_buckets"
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "key", "window_start"], name="rate_limit_bucket_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}@{self.window_start:%Y-%m-%dT%H:%M:%S} = {self.count}"


class SeenNonce(models.Model):
    """A value that may be used once until `expires_at` (e.g. a webhook signature), stored
    as its SHA-256 so the table holds nothing usable."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "seen_nonces"
        constraints = [
            models.UniqueConstraint(fields=["scope", "digest"], name="seen_nonce_unique")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.digest[:12]}…"
