"""Recording who did what. Services call `audit_record` inside the transaction of the change
they make, so an entry exists exactly when the change does; a refused action writes nothing.
Secret values never reach an entry: `audit_changes` records only that they changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit_app.context import SYSTEM, AuditContext
from audit_app.models import AuditEntry

CHANGED = "changed"


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json(v) for v in value]
    return str(value)


def audit_changes(
    *, before: Mapping[str, Any], after: Mapping[str, Any], secret: Iterable[str] = ()
) -> dict[str, Any]:
    """{field: {"old": …, "new": …}} for fields whose value differs; a secret field is only
    marked "changed"."""
    hidden = set(secret)
    changes: dict[str, Any] = {}
    for name in after:
        old, new = before.get(name), after[name]
        if old == new:
            continue
        changes[name] = CHANGED if name in hidden else {"old": _json(old), "new": _json(new)}
    return changes


def audit_record(
    *,
    audit: AuditContext | None,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    changes: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry. Call it inside the transaction of the change it records."""
    context = audit or SYSTEM
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_repr = target_repr or str(target)
    user = context.user
    return AuditEntry.objects.create(
        actor_type=context.actor_type,
        actor_user_id=getattr(user, "pk", None) if user is not None else None,
        actor_name=(context.name or getattr(user, "username", ""))[:255],
        interface=context.interface,
        ip=context.ip,
        action=action,
        target_type=target_type[:64],
        target_id=target_id[:255],
        target_repr=target_repr[:255],
        changes=_json(dict(changes or {})),
        details=_json(dict(details or {})),
    )


def audit_purge_old() -> int:
    """Delete entries older than FASTFLOW_AUDIT_RETENTION_DAYS (0 = keep forever)."""
    days = settings.FASTFLOW_AUDIT_RETENTION_DAYS
    if not days:
        return 0
    deleted, _ = AuditEntry.objects.filter(
        created_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted


def audit_entries(*, filters: Mapping[str, Any]) -> models.QuerySet[AuditEntry]:
    """Entries newest first, narrowed by the audit API's filters (all optional)."""
    entries = AuditEntry.objects.order_by("-created_at", "-id")
    for name in ("action", "actor_type", "interface", "target_type", "target_id"):
        if filters.get(name):
            entries = entries.filter(**{name: filters[name]})
    if filters.get("actor"):
        entries = entries.filter(actor_name__icontains=filters["actor"])
    if filters.get("since"):
        entries = entries.filter(created_at__gte=filters["since"])
    if filters.get("until"):
        entries = entries.filter(created_at__lte=filters["until"])
    if filters.get("q"):
        text = filters["q"]
        entries = entries.filter(
            models.Q(actor_name__icontains=text)
            | models.Q(action__icontains=text)
            | models.Q(target_repr__icontains=text)
            | models.Q(target_id=text)
        )
    return entries
