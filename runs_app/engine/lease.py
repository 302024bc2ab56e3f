"""A named, expiring lease in the database: the scheduler leader is whoever holds "scheduler".

A lease row is taken over only once it has expired, and renewed by a conditional UPDATE on
(name, holder), so at most one engine believes it holds it at any time, give or take clock
skew between hosts (keep them on NTP). The same code works on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from runs_app.models import EngineLease

SCHEDULER_LEASE = "scheduler"
LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0


def lease_acquire(*, name: str, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Take or renew the lease; True if `holder` holds it until now + `seconds`."""
    now = timezone.now()
    expires = now + timedelta(seconds=seconds)
    taken = (
        EngineLease.objects.filter(name=name)
        .filter(Q(holder=holder) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=expires)
    )
    if taken:
        return True
    if EngineLease.objects.filter(name=name).exists():
        # Held by another engine. Checked first so a standby engine does not make PostgreSQL
        # log a unique-violation ERROR at every renewal (every 2 s); the INSERT below is only
        # for the very first holder, and its IntegrityError still settles a race.
        return False
    try:
        with transaction.atomic():
            EngineLease.objects.create(name=name, holder=holder, expires_at=expires)
    except IntegrityError:
        return False  # someone else holds it (or created it a moment ago)
    return True


def lease_release(*, name: str, holder: str) -> None:
    """Give the lease up at once so another engine can take over without waiting for expiry."""
    EngineLease.objects.filter(name=name, holder=holder).delete()
