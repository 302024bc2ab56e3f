"""Notifications: global targets, events into the outbox, and sending from it.

`notification_event_emit` is the one way in for every event (run finished, schedule late, an
engine gone silent, ...): it writes the event once per key and one delivery per subscribed
target, inside the caller's transaction. `notifications_send_due` (every engine, in its own
thread) claims due deliveries with a conditional UPDATE, sends each, and records the attempt;
a failure is retried with exponential backoff up to FASTFLOW_NOTIFY_MAX_ATTEMPTS.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_changes, audit_record
from notifications_app.errors import InvalidNotificationInput
from notifications_app.messages import message_render
from notifications_app.models import (
    DeliveryStatus,
    NotificationAttempt,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
)
from notifications_app.sender import SendFailed, apprise_plugin, apprise_send, url_scheme
from notifications_app.ssrf import Policy, is_public
from pipelines_app.models import Pipeline
from pipelines_app.spec_ops import (
    DEFAULT_EVENTS,
    NOTIFY_EVENTS,
    SUBSCRIBABLE_EVENTS,
    NotificationSettings,
    event_matches,
)
from secrets_app import crypto
from secrets_app.services import MissingSecretError, secrets_resolve

logger = logging.getLogger(__name__)

CHANNEL_NAME_MAX = 100
BACKOFF_CAP_SECONDS = 3600.0
SEND_BATCH = 20
# Events recorded even when nobody is subscribed: the recovery message needs to know that a
# failure happened.
ALWAYS_RECORDED = {"run_failed", "retries_exhausted", "run_recovered"}


# --- Global targets -----------------------------------------------------------------------------


def _check_events(events: object) -> list[str]:
    if not isinstance(events, list | tuple) or any(e not in SUBSCRIBABLE_EVENTS for e in events):
        message = f"events must be a list drawn from: {', '.join(SUBSCRIBABLE_EVENTS)}"
        raise InvalidNotificationInput(message, {"events": message})
    return list(dict.fromkeys(events))


def channel_url_validate(*, url: str) -> str:
    """The URL's scheme if Apprise can use it; refuses a literal non-public address that
    FASTFLOW_NOTIFY_ALLOWED_HOSTS does not allow (names are checked again at every send)."""
    url = (url or "").strip()
    plugin = apprise_plugin(url) if url else None
    if plugin is None:
        message = (
            "not an Apprise URL Apprise understands (e.g. mailtos://user:pass@example.com, "
            "slack://…, json://host/path)"
        )
        raise InvalidNotificationInput(message, {"url": message})
    host = str(getattr(plugin, "smtp_host", "") or getattr(plugin, "host", "") or "")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    policy = Policy.from_entries(settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS)
    if (ip is not None and not is_public(ip) and not policy.allows(host, ip)) or (
        host.lower() == "localhost" and "localhost" not in policy.names
    ):
        message = (
            f"{host} is not a public address; list it in FASTFLOW_NOTIFY_ALLOWED_HOSTS to allow it"
        )
        raise InvalidNotificationInput(message, {"url": message})
    return url_scheme(url)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > CHANNEL_NAME_MAX or "://" in name:
        message = f"a name of 1 to {CHANNEL_NAME_MAX} characters (not a URL)"
        raise InvalidNotificationInput(message, {"name": message})
    return name


def channel_create(
    *,
    name: str,
    url: str,
    events: list[str] | None = None,
    enabled: bool = True,
    audit: AuditContext | None = None,
) -> NotificationChannel:
    """A global target; the URL is encrypted and never shown again."""
    name = _check_name(name)
    scheme = channel_url_validate(url=url)
    events = _check_events(list(DEFAULT_EVENTS) if events is None else events)
    if NotificationChannel.objects.filter(name=name).exists():
        message = f"a notification target named {name!r} already exists"
        raise InvalidNotificationInput(message, {"name": message})
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            name=name,
            url=crypto.encrypt(url.strip()),
            scheme=scheme,
            events=events,
            enabled=enabled,
        )
        audit_record(
            audit=audit,
            action="notification_target.create",
            target=channel,
            changes={
                "url": "changed",
                **audit_changes(
                    before={}, after={"name": name, "events": events, "enabled": enabled}
                ),
            },
        )
    return channel


def channel_update(
    *,
    channel: NotificationChannel,
    name: str | None = None,
    url: str | None = None,
    events: list[str] | None = None,
    enabled: bool | None = None,
    audit: AuditContext | None = None,
) -> NotificationChannel:
    """Change what is given; an empty or None `url` keeps the stored one."""
    changes: dict[str, Any] = {}
    if name is not None and name.strip() != channel.name:
        changes["name"] = _check_name(name)
        if NotificationChannel.objects.filter(name=changes["name"]).exclude(id=channel.id).exists():
            message = f"a notification target named {changes['name']!r} already exists"
            raise InvalidNotificationInput(message, {"name": message})
    if url:
        changes["scheme"] = channel_url_validate(url=url)
        changes["url"] = crypto.encrypt(url.strip())
    if events is not None:
        changes["events"] = _check_events(events)
    if enabled is not None:
        changes["enabled"] = bool(enabled)
    if changes:
        before = {k: getattr(channel, k) for k in ("name", "events", "enabled")}
        changes["updated_at"] = timezone.now()
        with transaction.atomic():
            NotificationChannel.objects.filter(id=channel.id).update(**changes)
            diff = audit_changes(
                before=before,
                after={k: v for k, v in changes.items() if k in before},
            )
            if "url" in changes:
                diff["url"] = "changed"
            if diff:
                audit_record(
                    audit=audit, action="notification_target.update", target=channel, changes=diff
                )
        for key, value in changes.items():
            setattr(channel, key, value)
    return channel


def channel_delete(*, channel: NotificationChannel, audit: AuditContext | None = None) -> None:
    with transaction.atomic():
        deleted, _ = NotificationChannel.objects.filter(id=channel.id).delete()
        if deleted:
            audit_record(audit=audit, action="notification_target.delete", target=channel)


def channels_rotate(*, audit: AuditContext | None = None) -> int:
    """Re-encrypt every target URL with the current (first) key, all or nothing."""
    count = 0
    with transaction.atomic():
        for channel in NotificationChannel.objects.select_for_update():
            NotificationChannel.objects.filter(id=channel.id).update(url=crypto.rotate(channel.url))
            count += 1
        if count:
            audit_record(audit=audit, action="notification_target.rotate", details={"count": count})
    return count


# --- Events into the outbox ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    label: str
    channel: NotificationChannel | None = None
    secret_key: str = ""
    problem: str = ""  # why it cannot be sent (recorded as a failed delivery, never dropped)


def _pipeline_settings(
    pipeline_name: str, run_config_id: str, pipeline: Pipeline | None
) -> NotificationSettings:
    if not pipeline_name:
        return NotificationSettings()
    if pipeline is None or pipeline.pipeline_name != pipeline_name:
        pipeline = Pipeline.objects.filter(pipeline_name=pipeline_name).first()
    if pipeline is None:
        return NotificationSettings()
    try:
        return pipeline.spec.notifications_for(run_config_id or None)
    except ValueError:  # an unreadable stored configuration: global targets still hear of it
        return NotificationSettings()


def _recipients(
    kind: str,
    pipeline_name: str,
    run_config_id: str,
    only: NotificationChannel | None,
    pipeline: Pipeline | None,
) -> list[_Recipient]:
    if only is not None:
        return [_Recipient(label=only.name, channel=only)]
    config = _pipeline_settings(pipeline_name, run_config_id, pipeline)
    found: dict[str, _Recipient] = {}
    if config.global_targets is not False:
        for channel in NotificationChannel.objects.filter(enabled=True):
            subscribed = config.events if config.events is not None else channel.events
            if event_matches(kind, subscribed):
                found.setdefault(channel.name, _Recipient(label=channel.name, channel=channel))
    own_events = config.events if config.events is not None else DEFAULT_EVENTS
    if not event_matches(kind, own_events):
        return list(found.values())
    named = {t.channel for t in config.targets or () if t.channel}
    channels = {c.name: c for c in NotificationChannel.objects.filter(name__in=named)}
    for target in config.targets or ():
        if target.secret:
            found.setdefault(target.label, _Recipient(target.label, secret_key=target.secret))
        elif target.channel in channels:
            channel = channels[target.channel]
            problem = "" if channel.enabled else "the target is disabled"
            found.setdefault(channel.name, _Recipient(channel.name, channel, problem=problem))
        else:
            problem = (
                f"pipeline.json names a notification target {target.channel!r} that does not exist"
            )
            found.setdefault(target.label, _Recipient(target.label, problem=problem))
    return list(found.values())


def notification_event_emit(
    *,
    kind: str,
    key: str,
    pipeline_name: str = "",
    run_id: uuid.UUID | str | None = None,
    run_config_id: str = "",
    summary: str = "",
    facts: dict[str, Any] | None = None,
    with_log: bool = True,
    channel: NotificationChannel | None = None,
    pipeline: Pipeline | None = None,
) -> NotificationEvent | None:
    """Record an event once per `key` and queue it for every subscribed target.

    Call it inside the transaction of the change it reports. Returns None when the key was
    already recorded (a retried finish, another engine) or nobody listens to a routine event.
    `pipeline`: the row of `pipeline_name` when the caller has just read it (else it is read
    here for its notification settings).
    """
    if kind not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notification event {kind!r}")
    recipients = _recipients(kind, pipeline_name, run_config_id, channel, pipeline)
    if not recipients and kind not in ALWAYS_RECORDED:
        return None
    now = timezone.now()
    try:
        with transaction.atomic():
            event = NotificationEvent.objects.create(
                key=key[:255],
                kind=kind,
                pipeline_name=pipeline_name,
                run_id=run_id,
                details={"summary": summary, "facts": facts or {}, "with_log": with_log},
                created_at=now,
            )
    except IntegrityError:
        return None
    NotificationDelivery.objects.bulk_create(
        [
            NotificationDelivery(
                event=event,
                channel=r.channel,
                secret_key=r.secret_key,
                target_label=r.label[:255],
                status=DeliveryStatus.FAILED if r.problem else DeliveryStatus.PENDING,
                last_error=r.problem,
                next_attempt_at=now,
                created_at=now,
            )
            for r in recipients
        ]
    )
    return event


# --- Sending ------------------------------------------------------------------------------------


def _claim_seconds() -> float:
    # A send is bounded by the timeout per connection; leave room for a few connections.
    return max(60.0, 4 * settings.FASTFLOW_NOTIFY_TIMEOUT_SECONDS)


def backoff_seconds(attempt: int) -> float:
    """Wait after failed attempt number `attempt` (1-based)."""
    base = settings.FASTFLOW_NOTIFY_RETRY_SECONDS
    return min(base * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


def deliveries_claim(
    *, engine_id: str, limit: int = SEND_BATCH, ids: list[int] | None = None
) -> list[NotificationDelivery]:
    """Due deliveries (or ones whose sender's claim expired), each taken by a conditional
    UPDATE: two engines never send one delivery at the same time."""
    now = timezone.now()
    due = NotificationDelivery.objects.filter(
        Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
    )
    if ids is not None:
        due = due.filter(id__in=ids)
    candidates = list(
        due.order_by("next_attempt_at", "id").values_list("id", "status", "claimed_until")[:limit]
    )
    claimed_ids = []
    until = now + timedelta(seconds=_claim_seconds())
    for delivery_id, status, claimed_until in candidates:
        taken = NotificationDelivery.objects.filter(
            id=delivery_id, status=status, claimed_until=claimed_until
        ).update(status=DeliveryStatus.SENDING, claimed_by=engine_id, claimed_until=until)
        if taken == 1:
            claimed_ids.append(delivery_id)
    return list(
        NotificationDelivery.objects.filter(id__in=claimed_ids)
        .select_related("event", "channel")
        .order_by("id")
    )


def _target_url(delivery: NotificationDelivery) -> str:
    if delivery.secret_key:
        try:
            return secrets_resolve(keys=[delivery.secret_key])[delivery.secret_key]
        except MissingSecretError as exc:
            raise SendFailed(str(exc)) from None
    channel = delivery.channel
    if channel is None:
        raise SendFailed("the notification target was deleted before the message was sent")
    if not channel.enabled:
        raise SendFailed("the notification target is disabled")
    try:
        return crypto.decrypt(channel.url)
    except crypto.DecryptionError:
        raise SendFailed(
            "the target's URL cannot be decrypted with the configured FASTFLOW_ENCRYPTION_KEY"
        ) from None


def _message(event: NotificationEvent) -> tuple[str, str]:
    if not event.title:
        title, body = message_render(event=event)
        # The first sender's text wins, so every target and retry says the same.
        NotificationEvent.objects.filter(id=event.id, title="").update(title=title, body=body)
        event.refresh_from_db(fields=["title", "body"])
    return event.title, event.body


def delivery_send(*, delivery: NotificationDelivery, engine_id: str) -> bool:
    """Send one claimed delivery and record the attempt; True when it went out."""
    started = timezone.now()
    try:
        title, body = _message(delivery.event)
        apprise_send(url=_target_url(delivery), title=title, body=body)
        error = ""
    except SendFailed as exc:
        error = str(exc) or "failed"
    except Exception as exc:  # noqa: BLE001 - one broken delivery must not stop the others
        logger.exception("notification delivery %s failed unexpectedly", delivery.id)
        error = f"{exc.__class__.__name__}: {exc}"
    finished = timezone.now()
    number = delivery.attempts + 1
    if not error:
        outcome: dict[str, Any] = {"status": DeliveryStatus.SENT, "sent_at": finished}
    elif number >= settings.FASTFLOW_NOTIFY_MAX_ATTEMPTS or delivery.event.kind == "test":
        # A test message reports at once in the admin; retrying it later would only confuse.
        outcome = {"status": DeliveryStatus.FAILED}
    else:
        wait = backoff_seconds(number)
        outcome = {
            "status": DeliveryStatus.PENDING,
            "next_attempt_at": finished + timedelta(seconds=wait),
        }
    with transaction.atomic():
        NotificationAttempt.objects.create(
            delivery_id=delivery.id,
            number=number,
            engine_id=engine_id,
            started_at=started,
            finished_at=finished,
            ok=not error,
            error=error,
        )
        NotificationDelivery.objects.filter(
            id=delivery.id, status=DeliveryStatus.SENDING, claimed_by=engine_id
        ).update(attempts=F("attempts") + 1, last_error=error, claimed_until=None, **outcome)
    if error:
        logger.warning(
            "notification %s to %s: attempt %d failed: %s",
            delivery.event.kind,
            delivery.target_label,
            number,
            error,
        )
    return not error


def notifications_send_due(*, engine_id: str) -> int:
    """Send what is due (one batch); returns how many went out."""
    sent = 0
    for delivery in deliveries_claim(engine_id=engine_id):
        sent += delivery_send(delivery=delivery, engine_id=engine_id)
    return sent


def notifications_due() -> bool:
    now = timezone.now()
    return NotificationDelivery.objects.filter(
        Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
    ).exists()


def channel_send_test(*, channel: NotificationChannel, sender: str = "web") -> NotificationDelivery:
    """Send a test message to one target now (from the admin) and return its delivery, with
    the attempt recorded like any other."""
    with transaction.atomic():
        event = notification_event_emit(
            kind="test",
            key=f"test:{channel.id}:{uuid.uuid4()}",
            summary=f"A test message for the notification target {channel.name!r}.",
            facts={"Sent from": settings.FASTFLOW_BASE_URL},
            channel=channel,
        )
    assert event is not None  # a fresh key with a recipient is always recorded
    delivery = event.deliveries.get()
    claimed = deliveries_claim(engine_id=sender, ids=[delivery.id])
    for item in claimed:
        delivery_send(delivery=item, engine_id=sender)
    delivery.refresh_from_db()
    return delivery
