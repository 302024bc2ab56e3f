"""Rate limits and one-time values kept in the database, so they hold across every web process
and host with no extra configuration (Django's default cache is per process: with
`gunicorn --workers 2` a signed webhook was accepted once per worker, and each worker had its
own rate budget).

Django's database cache backend is not used: its `incr()` is a read followed by a write (two
processes counting at once lose a count) and it evicts entries when it is full, which would
forget seen signatures. Here a count is one conditional `UPDATE ... SET count = count + 1`
on a row whose uniqueness the database enforces, and a one-time value is an `INSERT` that a
unique constraint refuses the second time.

Expired rows are deleted by the engine's leader chores (`throttle_purge_expired`); until
then they are only ignored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from fastflow_site.models import RateLimitBucket, SeenNonce

KEY_MAX_LENGTH = 255


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    count: int
    retry_after: int  # seconds until a request would be allowed again


def _short(key: str) -> str:
    if len(key) <= KEY_MAX_LENGTH:
        return key
    return key[:180] + ":" + hashlib.sha256(key.encode()).hexdigest()


def rate_limit_hit(*, scope: str, key: str, limit: int, window_seconds: int) -> RateLimitResult:
    """Count one request of `key` and say whether it is within `limit` per `window_seconds`.

    Counts are kept per fixed window (aligned to multiples of `window_seconds` since the epoch),
    and the rate is the sliding estimate over the last `window_seconds`: the current window's
    count plus the previous window's, weighted by how much of it the sliding window still
    covers. A plain fixed window let a burst straddling the boundary through twice."""
    now = timezone.now()
    start = math.floor(now.timestamp() / window_seconds) * window_seconds
    window_start = datetime.fromtimestamp(start, tz=UTC)
    window = timedelta(seconds=window_seconds)
    # Kept for the next window too, which weighs this one's count.
    expires_at = window_start + 2 * window
    short = _short(key)
    bucket = RateLimitBucket.objects.filter(scope=scope, key=short, window_start=window_start)
    with transaction.atomic():
        # The UPDATE takes the row's lock until commit, so the count read below is this
        # request's own and no other process's increment is lost.
        if not bucket.update(count=F("count") + 1):
            try:
                with transaction.atomic():
                    RateLimitBucket.objects.create(
                        scope=scope,
                        key=short,
                        window_start=window_start,
                        count=1,
                        expires_at=expires_at,
                    )
            except IntegrityError:  # another process created it first
                bucket.update(count=F("count") + 1)
        count = bucket.values_list("count", flat=True).get()
    previous = (
        RateLimitBucket.objects.filter(scope=scope, key=short, window_start=window_start - window)
        .values_list("count", flat=True)
        .first()
        or 0
    )
    elapsed = (now - window_start) / window
    rate = count + previous * (1 - elapsed)
    # Until the window turns, then until this window's weight has fallen far enough.
    wait = (window_start + window - now).total_seconds()
    if count > 0 and limit > 0:
        wait += window_seconds * max(0.0, 1 - (limit - 1) / count)
    retry_after = max(math.ceil(wait), 1)
    return RateLimitResult(allowed=rate <= limit, count=count, retry_after=retry_after)


def nonce_use(*, scope: str, value: str, ttl_seconds: int) -> bool:
    """True the first time `value` is used in `scope` (within `ttl_seconds`), False after."""
    now = timezone.now()
    digest = hashlib.sha256(value.encode()).hexdigest()
    expires_at = now + timedelta(seconds=ttl_seconds)
    try:
        with transaction.atomic():
            SeenNonce.objects.create(scope=scope, digest=digest, expires_at=expires_at)
    except IntegrityError:
        # Used before: only a use that has expired (and was not purged yet) may be renewed,
        # and only by one of several concurrent callers.
        renewed = SeenNonce.objects.filter(scope=scope, digest=digest, expires_at__lte=now).update(
            expires_at=expires_at
        )
        return renewed == 1
    return True


def throttle_purge_expired() -> int:
    """Delete expired buckets and one-time values; returns how many rows went."""
    now = timezone.now()
    buckets, _ = RateLimitBucket.objects.filter(expires_at__lt=now).delete()
    nonces, _ = SeenNonce.objects.filter(expires_at__lt=now).delete()
    return buckets + nonces
