"""`POST /webhooks/<pipeline>/<key>`: start a run from outside, without an API token.

The key in the path is the credential. An unknown pipeline and a wrong key get the same 404,
and the key is compared in constant time against every key the pipeline has, so keys cannot
be probed. Optional HMAC signing (pipeline.json `webhook_secret_env`) additionally proves the
body came from the holder of a shared secret and was not replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from audit_app.context import AuditContext
from fastflow_site.api.errors import json_post_view, service_error_json
from fastflow_site.api.parsers import NESTED_TOO_DEEPLY
from fastflow_site.errors import ServiceError
from fastflow_site.throttle import nonce_use, rate_limit_hit
from pipelines_app.errors import SpecError
from pipelines_app.models import Pipeline
from runs_app import services
from runs_app.errors import PipelineNotFound, PipelineNotRunnable
from runs_app.models import TriggeredBy
from runs_app.prometheus import webhook_response_counted
from secrets_app.services import MissingSecretError, secrets_resolve

SIGNATURE_WINDOW_SECONDS = 300
IDEMPOTENCY_KEY_MAX_LENGTH = 200
# Compared against when the pipeline does not exist, so that case costs the same as a wrong key.
_DUMMY_KEY = "x" * 64


class WebhookRefused(ServiceError):
    """A refusal of the webhook view itself (body, signature, rate); the run services' own
    errors pass through unchanged, since they are ServiceErrors too."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, headers=headers)
        self.http_status, self.code = status, code


def _not_found() -> WebhookRefused:
    # One answer for an unknown pipeline and a wrong key, so keys cannot be probed.
    return WebhookRefused(404, "not_found", "no such webhook")


def _match(pipeline: Pipeline | None, key: str) -> tuple[bool, str | None]:
    if pipeline is None:
        hmac.compare_digest(key.encode(), _DUMMY_KEY.encode())
        return False, None
    try:
        return pipeline.spec.webhook_target(key)
    except SpecError:
        # Metadata that no longer parses has no usable keys: indistinguishable from a wrong key.
        return False, None


def _read_body(request: HttpRequest) -> bytes:
    limit = settings.FASTFLOW_WEBHOOK_MAX_BYTES
    too_large = WebhookRefused(413, "payload_too_large", f"body is larger than {limit} bytes")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise WebhookRefused(400, "invalid", "malformed Content-Length header") from None
    if declared > limit:
        raise too_large
    # Read at most one byte past the limit: a lying or absent Content-Length cannot make us
    # buffer more than that.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def _check_rate(pipeline: Pipeline) -> None:
    limit = settings.FASTFLOW_WEBHOOK_RATE_PER_MINUTE
    # Counted in the database: every web process (and host) shares one budget per pipeline.
    hit = rate_limit_hit(
        scope="webhook", key=pipeline.pipeline_name, limit=limit, window_seconds=60
    )
    if not hit.allowed:
        # The counting window is the calendar minute: a client may try again when it turns.
        raise WebhookRefused(
            429,
            "rate_limited",
            f"more than {limit} webhook calls this minute for this pipeline",
            headers={"Retry-After": str(hit.retry_after)},
        )


def _verify_signature(request: HttpRequest, body: bytes, secret_name: str) -> None:
    """HMAC-SHA256 over `<timestamp>.<raw body>`, inside a ±5 minute window, never twice."""
    try:
        secret = secrets_resolve(keys=[secret_name])[secret_name]
    except MissingSecretError as exc:
        raise WebhookRefused(
            409, "webhook_misconfigured", f"the webhook signing secret is unusable: {exc}"
        ) from None
    timestamp = request.headers.get("X-Fastflow-Timestamp", "")
    # Hex digits are case-insensitive (some tools print upper case). Normalised before both the
    # comparison and the replay check, so a re-cased copy is the same signature.
    signature = request.headers.get("X-Fastflow-Signature", "").strip().lower()
    if not timestamp or not signature:
        raise WebhookRefused(
            401,
            "signature_required",
            "this webhook requires X-Fastflow-Timestamp and X-Fastflow-Signature headers",
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRefused(
            401, "signature_invalid", "X-Fastflow-Timestamp must be unix seconds"
        ) from None
    if abs(time.time() - sent_at) > SIGNATURE_WINDOW_SECONDS:
        raise WebhookRefused(
            401,
            "signature_expired",
            f"X-Fastflow-Timestamp is more than {SIGNATURE_WINDOW_SECONDS} seconds from now",
        )
    expected = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256)
    if not hmac.compare_digest(signature.encode(), f"sha256={expected.hexdigest()}".encode()):
        raise WebhookRefused(401, "signature_invalid", "X-Fastflow-Signature does not match")
    # Remembered only once verified, so forged requests cannot block a genuine one; in the
    # database, so a copy sent to another web process is refused too. The entry outlives any
    # timestamp that could still pass the window check.
    first_use = nonce_use(
        scope="webhook-signature", value=signature, ttl_seconds=2 * SIGNATURE_WINDOW_SECONDS + 1
    )
    if not first_use:
        raise WebhookRefused(
            409, "replayed", "this signed request was already received; sign each request anew"
        )


def _parameters(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRefused(400, "parse_error", f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise WebhookRefused(400, "parse_error", NESTED_TOO_DEEPLY) from None
    if not isinstance(data, dict):
        raise WebhookRefused(
            400, "invalid", "the body must be a JSON object of parameters (string values)"
        )
    return data


def _idempotency_key(request: HttpRequest, pipeline: Pipeline) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return ""
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isprintable():
        raise WebhookRefused(
            400,
            "invalid",
            f"Idempotency-Key must be printable and at most {IDEMPOTENCY_KEY_MAX_LENGTH} "
            "characters",
        )
    return f"webhook:{pipeline.pipeline_name}:{key}"


def _trigger(request: HttpRequest, pipeline_name: str, webhook_key: str) -> JsonResponse:
    body = _read_body(request)
    pipeline = Pipeline.objects.filter(pipeline_name=pipeline_name).first()
    matched, run_config_id = _match(pipeline, webhook_key)
    if not matched or pipeline is None:
        raise _not_found()
    if not pipeline.is_runnable:
        # Before the signature check, as run_enqueue would refuse it anyway (same error).
        raise PipelineNotRunnable(pipeline.not_runnable_reason)
    if pipeline.spec.webhook_secret_env:
        _verify_signature(request, body, pipeline.spec.webhook_secret_env)
    # Counted only for authenticated calls, so strangers cannot use up a pipeline's budget.
    _check_rate(pipeline)
    parameters = _parameters(body)
    try:
        run = services.run_enqueue(
            pipeline=pipeline,
            triggered_by=TriggeredBy.WEBHOOK,
            parameters=parameters,
            run_config_id=run_config_id,
            idempotency_key=_idempotency_key(request, pipeline),
            audit=AuditContext.webhook(request, pipeline_name=pipeline.pipeline_name),
        )
    except PipelineNotFound:
        raise _not_found() from None  # deleted since the key matched: still "no such webhook"
    return JsonResponse({"run_id": str(run.id), "status": run.status}, status=202)


@csrf_exempt
def webhook_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return webhook_response_counted(service_error_json(_not_found()))


@csrf_exempt
def webhook_trigger(request: HttpRequest, pipeline_name: str, webhook_key: str) -> JsonResponse:
    return webhook_response_counted(_respond(request, pipeline_name, webhook_key))


@json_post_view
def _respond(request: HttpRequest, pipeline_name: str, webhook_key: str) -> JsonResponse:
    return _trigger(request, pipeline_name, webhook_key)
