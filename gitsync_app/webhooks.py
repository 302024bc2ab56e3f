"""`POST /webhooks/git`: a forge's push webhook requests a git sync.

Verified by the forge's own scheme, with the repository's webhook secret:
- GitHub (and Gitea/Forgejo, which send the same header): `X-Hub-Signature-256: sha256=<hex
  HMAC-SHA256 of the raw body>`;
- GitLab: `X-Gitlab-Token: <the secret>`, compared in constant time.
Neither forge signs a timestamp, so a replay cannot be told by age: a verified request is
remembered (in the database) for REPLAY_WINDOW_SECONDS and the same request again is refused
(409), as the run webhooks do with signed requests. After that window a replay only causes one
more fetch of the branch (a sync is idempotent). Without a configured secret the URL answers 404
like any unknown webhook. Only pushes to the synced branch request a sync; other events are answered
and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from audit_app.context import AuditContext, client_ip
from audit_app.models import ActorType, Interface
from fastflow_site.api.errors import json_post_view
from fastflow_site.errors import ServiceError
from fastflow_site.throttle import nonce_use
from gitsync_app.services import (
    repository_get,
    repository_request_sync,
    repository_webhook_secret,
)
from secrets_app.crypto import DecryptionError

REPLAY_WINDOW_SECONDS = 600
PUSH_EVENTS = {"push", "Push Hook"}  # X-GitHub-Event / X-Gitea-Event, X-Gitlab-Event


class GitWebhookRefused(ServiceError):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.http_status, self.code = status, code


def _body(request: HttpRequest) -> bytes:
    limit = settings.FASTFLOW_WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise GitWebhookRefused(400, "invalid", "malformed Content-Length header") from None
    body = b"" if declared > limit else request.read(limit + 1)
    if declared > limit or len(body) > limit:
        raise GitWebhookRefused(413, "payload_too_large", f"body is larger than {limit} bytes")
    return body


def _verify(request: HttpRequest, body: bytes, secret: str) -> tuple[str, str]:
    """(forge, proof) of a verified request; the proof identifies it for the replay check."""
    signature = request.headers.get("X-Hub-Signature-256", "").strip().lower()
    token = request.headers.get("X-Gitlab-Token", "")
    if signature:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise GitWebhookRefused(401, "signature_invalid", "X-Hub-Signature-256 does not match")
        return "github", signature
    if token:
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise GitWebhookRefused(401, "signature_invalid", "X-Gitlab-Token does not match")
        return "gitlab", hashlib.sha256(body).hexdigest()
    raise GitWebhookRefused(
        401,
        "signature_required",
        "a push webhook must carry X-Hub-Signature-256 (GitHub, Gitea) or X-Gitlab-Token (GitLab)",
    )


def _payload(request: HttpRequest, body: bytes) -> dict:
    text = body.decode("utf-8", errors="replace")
    if request.content_type == "application/x-www-form-urlencoded":
        # GitHub's other content type: the JSON is the `payload` form field.
        text = (parse_qs(text).get("payload") or [""])[0]
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise GitWebhookRefused(400, "parse_error", f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise GitWebhookRefused(400, "invalid", "the body must be the forge's JSON object")
    return data


def _event(request: HttpRequest) -> str:
    for header in ("X-GitHub-Event", "X-Gitea-Event", "X-Gitlab-Event"):
        if value := request.headers.get(header):
            return value
    return ""


def _handle(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    repo = repository_get()
    if repo is None or not repo.url or not repo.has_webhook_secret:
        raise GitWebhookRefused(404, "not_found", "no such webhook")
    try:
        secret = repository_webhook_secret(repo=repo)
    except DecryptionError:
        raise GitWebhookRefused(
            409,
            "webhook_misconfigured",
            "the webhook secret cannot be decrypted with any FASTFLOW_ENCRYPTION_KEY; set it again",
        ) from None
    forge, proof = _verify(request, body, secret)
    # Remembered only once verified, so a forged request cannot block a genuine one; in the
    # database (like the run webhooks' signatures), so a copy sent to another web process is
    # refused too.
    if not nonce_use(scope="git-push-webhook", value=proof, ttl_seconds=REPLAY_WINDOW_SECONDS):
        raise GitWebhookRefused(409, "replayed", "this webhook request was already received")
    event = _event(request)
    if event == "ping":
        return JsonResponse({"status": "pong"})
    if event not in PUSH_EVENTS:
        return _ignored(f"event {event or '(none)'!r} is not a push")
    ref = _payload(request, body).get("ref")
    wanted = f"refs/heads/{repo.branch}"
    if ref != wanted:
        return _ignored(f"push to {ref!r}, not to the synced branch {wanted!r}")
    delivery = request.headers.get("X-GitHub-Delivery") or request.headers.get(
        "X-Gitlab-Event-UUID", ""
    )
    requested = repository_request_sync(
        requested_by=f"push webhook ({forge}{', ' + delivery[:64] if delivery else ''})",
        audit=AuditContext(
            interface=Interface.WEBHOOK,
            actor_type=ActorType.WEBHOOK,
            name=f"git push webhook ({forge})",
            ip=client_ip(request),
        ),
    )
    return JsonResponse(
        {"status": "sync requested", "branch": requested.branch, "commit": requested.commit},
        status=202,
    )


def _ignored(reason: str) -> JsonResponse:
    return JsonResponse({"status": "ignored", "detail": reason}, status=202)


@csrf_exempt
@json_post_view
def git_push_webhook(request: HttpRequest) -> JsonResponse:
    return _handle(request)
