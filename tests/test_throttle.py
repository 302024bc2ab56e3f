"""Rate limits and one-time values in the database (fastflow_site.throttle): counting, window
turnover, expiry, concurrent callers, and the leader's purge of expired rows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fastflow_site.models import RateLimitBucket, SeenNonce
from fastflow_site.throttle import nonce_use, rate_limit_hit, throttle_purge_expired
from runs_app.engine.housekeeping import LeaderChores


def at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(timezone, "now", lambda: moment)


@pytest.mark.django_db
def test_it_allows_up_to_the_limit_per_key_and_window(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 1, 10, 0, 15, tzinfo=UTC))

    results = [rate_limit_hit(scope="s", key="a", limit=3, window_seconds=60) for _ in range(5)]
    other = rate_limit_hit(scope="s", key="b", limit=3, window_seconds=60)

    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.count for r in results] == [1, 2, 3, 4, 5]
    # The minute turns at 10:01:00; 36 s later the five hits weigh 2, and one more fits in 3.
    assert results[-1].retry_after == 45 + 36
    assert other.allowed and other.count == 1


@pytest.mark.django_db
def test_a_burst_straddling_the_window_boundary_is_limited_once(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 1, 10, 0, 59, 900000, tzinfo=UTC))
    first = rate_limit_hit(scope="s", key="a", limit=3, window_seconds=60)
    at(monkeypatch, datetime(2026, 12, 1, 10, 1, 0, 100000, tzinfo=UTC))
    rest = [rate_limit_hit(scope="s", key="a", limit=3, window_seconds=60) for _ in range(4)]

    assert [first.allowed] + [r.allowed for r in rest] == [True, True, True, False, False]


@pytest.mark.django_db
def test_the_previous_window_weighs_less_as_it_slides_out(monkeypatch):
    for key in ("early", "late"):
        at(monkeypatch, datetime(2026, 12, 1, 10, 0, 59, tzinfo=UTC))
        for _ in range(3):
            rate_limit_hit(scope="s", key=key, limit=2, window_seconds=60)

    at(monkeypatch, datetime(2026, 12, 1, 10, 1, 0, tzinfo=UTC))
    early = rate_limit_hit(scope="s", key="early", limit=2, window_seconds=60)  # 3 + 1
    at(monkeypatch, datetime(2026, 12, 1, 10, 1, 45, tzinfo=UTC))
    late = rate_limit_hit(scope="s", key="late", limit=2, window_seconds=60)  # 3 x 0.25 + 1

    assert not early.allowed and early.count == 1
    assert late.allowed and late.count == 1


@pytest.mark.django_db
def test_a_long_key_is_stored_shortened_but_still_distinct():
    first = rate_limit_hit(scope="s", key="x" * 300 + "1", limit=1, window_seconds=60)
    second = rate_limit_hit(scope="s", key="x" * 300 + "2", limit=1, window_seconds=60)

    assert first.allowed and second.allowed
    assert all(len(key) <= 255 for key in RateLimitBucket.objects.values_list("key", flat=True))


@pytest.mark.django_db
def test_a_nonce_is_usable_once_per_scope_until_it_expires(monkeypatch):
    start = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    at(monkeypatch, start)

    assert nonce_use(scope="sig", value="abc", ttl_seconds=60) is True
    assert nonce_use(scope="sig", value="abc", ttl_seconds=60) is False
    assert nonce_use(scope="other", value="abc", ttl_seconds=60) is True
    assert "abc" not in str(list(SeenNonce.objects.values_list("digest", flat=True)))

    at(monkeypatch, start + timedelta(seconds=61))
    assert nonce_use(scope="sig", value="abc", ttl_seconds=60) is True
    assert nonce_use(scope="sig", value="abc", ttl_seconds=60) is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_count_every_hit_and_share_one_nonce():
    """Threads with their own database connections, like separate web processes."""
    outcomes: list[bool] = []
    counts: list[int] = []
    barrier = threading.Barrier(8)

    def caller() -> None:
        try:
            barrier.wait()
            outcomes.append(nonce_use(scope="sig", value="same", ttl_seconds=60))
            counts.append(rate_limit_hit(scope="s", key="k", limit=100, window_seconds=3600).count)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == [False] * 7 + [True]
    assert sorted(counts) == list(range(1, 9))


@pytest.mark.django_db
def test_the_leader_purges_expired_rows_only(monkeypatch):
    start = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    at(monkeypatch, start)
    rate_limit_hit(scope="s", key="old", limit=1, window_seconds=60)
    nonce_use(scope="sig", value="old", ttl_seconds=60)
    at(monkeypatch, start + timedelta(minutes=5))
    rate_limit_hit(scope="s", key="new", limit=1, window_seconds=60)
    nonce_use(scope="sig", value="new", ttl_seconds=60)

    LeaderChores(warmer=None, on_schedules_changed=lambda: None).purge()

    assert list(RateLimitBucket.objects.values_list("key", flat=True)) == ["new"]
    assert SeenNonce.objects.count() == 1
    assert throttle_purge_expired() == 0
