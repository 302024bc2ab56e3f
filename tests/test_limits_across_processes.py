"""Replay protection, idempotency and rate limits hold across web processes with no extra
configuration: the README's production command (gunicorn, 2 workers) shares nothing but the
database (issue 8, item 3)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from runs_app.models import PipelineRun
from secrets_app.services import secret_set
from tests.helpers_api import make_pipeline
from tests.helpers_web import WebServer

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "k3y-0f-the-etl-pipeline"
SIGNING_SECRET = "s1gning-secret-value"
COPIES = 20
RATE = 5
AUTH_RATE = 3


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("gunicorn")
    env = {
        "FASTFLOW_WEBHOOK_RATE_PER_MINUTE": str(RATE),
        "FASTFLOW_AUTH_RATE_LIMIT_COUNT": str(AUTH_RATE),
    }
    # `gunicorn --workers 2` as in the issue: sync workers, so parallel requests are certain to
    # reach both processes.
    server = WebServer("gunicorn", workers=2, threads=None, root=root, collectstatic=True, **env)
    with django_db_blocker.unblock(), server:
        yield server


def in_parallel(server: WebServer, requests: list[tuple]) -> list[tuple[int, dict, bytes]]:
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(lambda args: server.request(*args), requests))


def away_from_a_minute_boundary() -> None:
    """Rate counts are kept per calendar minute: a burst within one is counted in one row."""
    while time.time() % 60 > 50:
        time.sleep(0.5)


def signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Fastflow-Timestamp": timestamp,
        "X-Fastflow-Signature": f"sha256={digest.hexdigest()}",
    }


def test_one_signed_webhook_sent_twenty_times_at_once_is_accepted_exactly_once(gunicorn):
    secret_set(key="HOOK_SECRET", value=SIGNING_SECRET)
    make_pipeline("etl", {"webhook_key": KEY, "webhook_secret_env": "HOOK_SECRET"})
    body = json.dumps({"DAY": "monday"}).encode()
    headers = signed(body)

    answers = in_parallel(gunicorn, [("POST", f"/webhooks/etl/{KEY}", body, headers)] * COPIES)

    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {202: 1, 409: COPIES - 1}, statuses
    assert {json.loads(b)["error"] for s, _, b in answers if s == 409} == {"replayed"}
    assert PipelineRun.objects.count() == 1
    # Both workers answered (otherwise this would not test anything across processes).
    assert len(gunicorn.answering_pids("/webhooks/etl/")) == 2, gunicorn.read_output()


def test_the_webhook_rate_limit_counts_calls_of_every_process(gunicorn):
    make_pipeline("limited", {"webhook_key": KEY})
    away_from_a_minute_boundary()
    requests = [
        ("POST", f"/webhooks/limited/{KEY}", b"", {"Idempotency-Key": f"call-{i}"})
        for i in range(COPIES)
    ]

    answers = in_parallel(gunicorn, requests)

    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {202: RATE, 429: COPIES - RATE}, statuses
    # Sliding over the last minute: at most this minute's rest plus the next one.
    assert all(1 <= int(h["Retry-After"]) <= 120 for s, h, _ in answers if s == 429)
    assert PipelineRun.objects.count() == RATE


def test_a_repeated_idempotency_key_gives_one_run_across_processes(gunicorn):
    make_pipeline("repeated", {"webhook_key": KEY})
    away_from_a_minute_boundary()
    request = ("POST", f"/webhooks/repeated/{KEY}", b"", {"Idempotency-Key": "the-same-delivery"})

    answers = in_parallel(gunicorn, [request] * RATE)

    assert {status for status, _, _ in answers} == {202}
    assert len({json.loads(body)["run_id"] for _, _, body in answers}) == 1
    assert PipelineRun.objects.count() == 1


def test_the_login_link_rate_limit_counts_requests_of_every_process(gunicorn):
    answers = in_parallel(gunicorn, [("GET", "/login-link/not-a-valid-token")] * 10)

    statuses = Counter(status for status, _, _ in answers)
    assert statuses[429] == 10 - AUTH_RATE, statuses
