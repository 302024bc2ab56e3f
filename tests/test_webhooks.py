from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from runs_app.models import PipelineRun
from secrets_app.services import secret_set
from tests.helpers_api import assert_error, make_pipeline

pytestmark = pytest.mark.django_db

KEY = "k3y-0f-the-etl-pipeline"
CONFIG_KEY = "nightly-hook-key"
SIGNING_SECRET = "s1gning-secret-value"


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def etl():
    return make_pipeline(
        "etl",
        {
            "webhook_key": KEY,
            "schedules": [{"id": "nightly", "webhook_key": CONFIG_KEY}],
        },
    )


def post(client: Client, path: str, body: bytes | str = b"", **headers):
    return client.post(path, data=body, content_type="application/json", headers=headers)


def sign(body: bytes, *, secret: str = SIGNING_SECRET, at: int | None = None) -> dict:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "X-Fastflow-Timestamp": str(timestamp),
        "X-Fastflow-Signature": f"sha256={digest.hexdigest()}",
    }


def test_it_starts_a_run_with_the_body_as_parameters(client, etl):
    response = post(client, f"/webhooks/etl/{KEY}", json.dumps({"DAY": "monday"}))

    assert response.status_code == 202
    run = PipelineRun.objects.get()
    assert response.json() == {"run_id": str(run.id), "status": "PENDING"}
    assert run.triggered_by == "webhook"
    assert run.parameters == {"DAY": "monday"}
    assert run.run_config_id == ""


def test_it_accepts_a_trailing_slash_and_an_empty_body(client, etl):
    response = post(client, f"/webhooks/etl/{KEY}/")

    assert response.status_code == 202
    assert PipelineRun.objects.get().parameters == {}


def test_it_selects_the_run_configuration_whose_key_matched(client, etl):
    response = post(client, f"/webhooks/etl/{CONFIG_KEY}")

    assert response.status_code == 202
    assert PipelineRun.objects.get().run_config_id == "nightly"


def test_it_answers_a_wrong_key_and_an_unknown_pipeline_identically(client, etl):
    wrong_key = post(client, "/webhooks/etl/not-the-key")
    unknown = post(client, f"/webhooks/nope/{KEY}")
    garbage = post(client, "/webhooks/etl")
    control = post(client, "/webhooks/etl/%0Akey")

    assert_error(wrong_key, 404, "not_found")
    assert wrong_key.content == unknown.content == garbage.content == control.content
    assert PipelineRun.objects.count() == 0


def test_it_compares_keys_in_constant_time_against_every_key(client, etl, monkeypatch):
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    assert post(client, "/webhooks/etl/not-the-key").status_code == 404
    # Both configured keys were compared, through compare_digest, not ==.
    assert sorted(compared) == sorted([KEY.encode(), CONFIG_KEY.encode()])

    compared.clear()
    assert post(client, f"/webhooks/etl/{KEY}").status_code == 202
    assert len(compared) == 2  # no early exit on the first match either

    compared.clear()
    assert post(client, "/webhooks/unknown/not-the-key").status_code == 404
    assert len(compared) == 1  # an unknown pipeline still costs a comparison


@pytest.mark.parametrize(
    "fields",
    [{"enabled": False}, {"discovery_error": "pipeline.json: broken"}, {"is_missing": True}],
)
def test_it_refuses_a_pipeline_that_cannot_run_with_409(client, fields):
    make_pipeline("etl", {"webhook_key": KEY}, **fields)

    assert_error(post(client, f"/webhooks/etl/{KEY}"), 409, "pipeline_not_runnable")
    # Without the right key nothing about the pipeline's state leaks.
    assert_error(post(client, "/webhooks/etl/wrong"), 404, "not_found")
    assert PipelineRun.objects.count() == 0


def test_it_refuses_an_oversized_body_with_413(client, etl, settings):
    settings.FASTFLOW_WEBHOOK_MAX_BYTES = 2048
    at_limit = json.dumps({"DATA": "x" * (2048 - 12)}).encode()
    assert len(at_limit) == 2048

    assert_error(post(client, f"/webhooks/etl/{KEY}", at_limit + b" "), 413, "payload_too_large")
    assert PipelineRun.objects.count() == 0
    assert post(client, f"/webhooks/etl/{KEY}", at_limit).status_code == 202


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"DAY": "mon', "parse_error"),
        (b"\xff\xfe", "parse_error"),
        (b'["DAY"]', "invalid"),
        (b'"text"', "invalid"),
    ],
)
def test_it_rejects_a_malformed_body_with_400(client, etl, body, code):
    assert_error(post(client, f"/webhooks/etl/{KEY}", body), 400, code)
    assert PipelineRun.objects.count() == 0


def test_it_validates_parameters_like_the_api(client, etl):
    response = post(client, f"/webhooks/etl/{KEY}", json.dumps({"1BAD": "x", "COUNT": 3}))

    body = assert_error(response, 400, "invalid")
    assert set(body["fields"]) == {"parameters.1BAD", "parameters.COUNT"}


def test_it_returns_the_first_run_for_a_repeated_idempotency_key(client, etl):
    first = post(client, f"/webhooks/etl/{KEY}", **{"Idempotency-Key": "delivery-1"})
    again = post(client, f"/webhooks/etl/{KEY}", **{"Idempotency-Key": "delivery-1"})
    other = post(client, f"/webhooks/etl/{KEY}", **{"Idempotency-Key": "delivery-2"})

    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    assert other.json()["run_id"] != first.json()["run_id"]
    assert PipelineRun.objects.count() == 2
    assert PipelineRun.objects.get(id=first.json()["run_id"]).idempotency_key == (
        "webhook:etl:delivery-1"
    )


def test_it_rejects_an_unusable_idempotency_key(client, etl):
    assert_error(post(client, f"/webhooks/etl/{KEY}", **{"Idempotency-Key": "x" * 201}), 400)


def test_it_rate_limits_per_pipeline(client, etl, settings):
    settings.FASTFLOW_WEBHOOK_RATE_PER_MINUTE = 2
    make_pipeline("other", {"webhook_key": KEY})
    if 60 - time.time() % 60 < 3:  # keep the three calls inside one counting minute
        time.sleep(3)

    assert post(client, f"/webhooks/etl/{KEY}").status_code == 202
    assert post(client, f"/webhooks/etl/{KEY}").status_code == 202
    limited = post(client, f"/webhooks/etl/{KEY}")
    assert_error(limited, 429, "rate_limited")
    # The counting window is the calendar minute: the client is told when it turns.
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert post(client, f"/webhooks/other/{KEY}").status_code == 202
    # Wrong keys do not use up the pipeline's budget (nor get counted at all).
    assert post(client, "/webhooks/other/wrong").status_code == 404
    assert PipelineRun.objects.count() == 3


def test_it_answers_other_methods_with_405(client, etl):
    assert_error(client.get(f"/webhooks/etl/{KEY}"), 405, "method_not_allowed")


class TestSignedWebhooks:
    @pytest.fixture
    def signed(self):
        secret_set(key="HOOK_SECRET", value=SIGNING_SECRET)
        return make_pipeline("etl", {"webhook_key": KEY, "webhook_secret_env": "HOOK_SECRET"})

    def test_it_accepts_a_valid_signature(self, client, signed):
        body = json.dumps({"DAY": "monday"}).encode()

        response = post(client, f"/webhooks/etl/{KEY}", body, **sign(body))

        assert response.status_code == 202
        assert PipelineRun.objects.get().parameters == {"DAY": "monday"}

    def test_it_accepts_upper_case_hex_but_not_as_a_second_use(self, client, signed):
        body = b'{"DAY": "monday"}'
        headers = sign(body)
        upper = {**headers, "X-Fastflow-Signature": headers["X-Fastflow-Signature"].upper()}

        assert post(client, f"/webhooks/etl/{KEY}", body, **upper).status_code == 202
        # The lower-case original is the same signature: a replay.
        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **headers), 409, "replayed")
        assert PipelineRun.objects.count() == 1

    def test_it_requires_the_signature_headers(self, client, signed):
        assert_error(post(client, f"/webhooks/etl/{KEY}", b"{}"), 401, "signature_required")

    def test_it_refuses_a_wrong_signature(self, client, signed):
        body = b'{"DAY": "monday"}'
        tampered = sign(b'{"DAY": "sunday"}')
        wrong_secret = sign(body, secret="another-secret")

        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **tampered), 401)
        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **wrong_secret), 401)
        assert PipelineRun.objects.count() == 0

    def test_it_refuses_a_timestamp_outside_the_window(self, client, signed):
        body = b"{}"
        stale = sign(body, at=int(time.time()) - 301)
        future = sign(body, at=int(time.time()) + 301)
        garbage = {**sign(body), "X-Fastflow-Timestamp": "soon"}

        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **stale), 401, "signature_expired")
        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **future), 401)
        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **garbage), 401)
        assert PipelineRun.objects.count() == 0

    def test_it_refuses_a_replayed_request(self, client, signed):
        body = b'{"DAY": "monday"}'
        headers = sign(body)

        assert post(client, f"/webhooks/etl/{KEY}", body, **headers).status_code == 202
        assert_error(post(client, f"/webhooks/etl/{KEY}", body, **headers), 409, "replayed")
        assert PipelineRun.objects.count() == 1

    def test_it_answers_409_when_the_signing_secret_is_missing(self, client):
        make_pipeline("etl", {"webhook_key": KEY, "webhook_secret_env": "NOT_THERE"})

        body = b"{}"
        response = post(client, f"/webhooks/etl/{KEY}", body, **sign(body))

        assert_error(response, 409, "webhook_misconfigured")


def test_the_original_fastflow_url_is_an_alias_of_the_same_webhook(client, etl):
    started = post(client, f"/api/webhooks/etl/{KEY}", json.dumps({"DAY": "friday"}))
    wrong = post(client, "/api/webhooks/etl/not-the-key")
    also_wrong = post(client, f"/webhooks/etl/{KEY}x")

    assert started.status_code == 202
    run = PipelineRun.objects.get()
    assert started.json() == {"run_id": str(run.id), "status": "PENDING"}
    assert run.triggered_by == "webhook" and run.parameters == {"DAY": "friday"}
    # The same refusal as under /webhooks/, not the API's generic 404.
    assert wrong.status_code == also_wrong.status_code == 404
    assert wrong.json() == also_wrong.json()
    assert client.get(f"/api/webhooks/etl/{KEY}").status_code == 405
