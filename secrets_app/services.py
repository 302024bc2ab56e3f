from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from audit_app.context import AuditContext
from audit_app.services import audit_record
from fastflow_site.errors import ServiceError
from secrets_app import crypto
from secrets_app.models import Secret

# Secrets reach the run as environment variables, so the key must be a valid variable name.
SECRET_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_KEY_MAX_LENGTH = 255
ENCRYPTED_VALUE_MAX_BYTES = 64 * 1024


class MissingSecretError(ServiceError):
    """A pipeline asked for a secret that does not exist (or cannot be decrypted)."""

    code = "secret_missing"
    http_status = 409


def secret_validate(*, key: str, value: str) -> None:
    """Raise ValidationError (keyed by field) for a key or value a run could not receive."""
    if len(key) > SECRET_KEY_MAX_LENGTH:
        raise ValidationError(
            {"key": f"The key is longer than {SECRET_KEY_MAX_LENGTH} characters."}
        )
    if not SECRET_KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            {
                "key": f"{key!r} is not a valid environment variable name: use letters, "
                "digits and underscores, and do not start with a digit."
            }
        )
    if "\x00" in value:
        raise ValidationError({"value": "The value must not contain NUL characters."})


def encrypted_value_create(*, value: str, name: str = "") -> str:
    """A Fernet token of `value` (with the current key) for pipeline.json's `encrypted_env`.

    The value reaches a run as an environment variable, so it must be text without NUL and
    fit in one; `name`, if given, must be a valid variable name (it is not stored anywhere).
    Raises ValidationError keyed by field.
    """
    if name and not SECRET_KEY_PATTERN.fullmatch(name):
        raise ValidationError(
            {"name": f"{name!r} is not a valid environment variable name (letters, digits, _)."}
        )
    if not value:
        raise ValidationError({"value": "Enter the value to encrypt."})
    if "\x00" in value:
        raise ValidationError({"value": "The value must not contain NUL characters."})
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValidationError({"value": "The value is not valid Unicode text."}) from None
    if size > ENCRYPTED_VALUE_MAX_BYTES:
        raise ValidationError(
            {"value": f"The value is longer than {ENCRYPTED_VALUE_MAX_BYTES} bytes."}
        )
    return crypto.encrypt(value)


def secret_set(
    *, key: str, value: str, is_parameter: bool = False, audit: AuditContext | None = None
) -> Secret:
    """Create or replace a secret; secrets are encrypted, parameters stored as given. The
    audit log records that the value changed, never the value."""
    secret_validate(key=key, value=value)
    stored = value if is_parameter else crypto.encrypt(value)
    with transaction.atomic():
        before = Secret.objects.filter(key=key).first()
        secret, created = Secret.objects.update_or_create(
            key=key, defaults={"value": stored, "is_parameter": is_parameter}
        )
        changes: dict[str, object] = {"value": "changed"}
        if before is None or before.is_parameter != is_parameter:
            changes["is_parameter"] = {
                "old": None if before is None else before.is_parameter,
                "new": is_parameter,
            }
        audit_record(
            audit=audit,
            action="secret.create" if created else "secret.update",
            target=secret,
            changes=changes,
        )
    return secret


def secret_reveal(*, secret: Secret) -> str:
    """The plaintext value, for injection into a run. Never render this."""
    return secret.value if secret.is_parameter else crypto.decrypt(secret.value)


def secret_delete(*, key: str, audit: AuditContext | None = None) -> bool:
    with transaction.atomic():
        deleted, _ = Secret.objects.filter(key=key).delete()
        if deleted:
            audit_record(
                audit=audit,
                action="secret.delete",
                target_type="secrets_app.secret",
                target_id=key,
                target_repr=key,
            )
    return bool(deleted)


def secrets_resolve(*, keys: list[str]) -> dict[str, str]:
    """Plaintext values for the named keys; a missing or undecryptable key is an error."""
    found = {s.key: s for s in Secret.objects.filter(key__in=keys)}
    missing = [k for k in keys if k not in found]
    if missing:
        raise MissingSecretError(f"secret(s) not found: {', '.join(sorted(missing))}")
    values = {}
    for key in keys:
        try:
            values[key] = secret_reveal(secret=found[key])
        except crypto.DecryptionError as exc:
            raise MissingSecretError(f"secret '{key}' cannot be decrypted: {exc}") from exc
    return values


def secrets_rotate(*, audit: AuditContext | None = None) -> int:
    """Re-encrypt every secret with the current (first) key; returns how many were rewritten."""
    count = 0
    with transaction.atomic():
        for secret in Secret.objects.select_for_update().filter(is_parameter=False):
            secret.value = crypto.rotate(secret.value)
            secret.save(update_fields=["value", "updated_at"])
            count += 1
        if count:
            audit_record(audit=audit, action="secret.rotate", details={"count": count})
    return count
