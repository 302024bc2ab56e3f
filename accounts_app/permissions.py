"""Roles → permissions, in one place.

Django's admin asks `user.has_perm("<app>.<action>_<model>")`; DRF permission classes and the
webhook view use the same table. There are no per-user or per-group permissions.
"""

from __future__ import annotations

from accounts_app.models import Role

# Models each role may see at all in the admin / API (app_label.model_name).
READABLE: dict[str, set[str]] = {
    Role.READONLY: {
        "pipelines_app.pipeline",
        "runs_app.pipelinerun",
        "runs_app.scheduledjob",
    },
}
READABLE[Role.WRITE] = set(READABLE[Role.READONLY])
READABLE[Role.ADMIN] = READABLE[Role.WRITE] | {
    "secrets_app.secret",
    "accounts_app.user",
    "accounts_app.invitation",
    "accounts_app.session",
    "runs_app.engineinstance",
    "django_apscheduler.djangojob",
    "django_apscheduler.djangojobexecution",
}

# Models each role may change (add/change/delete), beyond viewing.
WRITABLE: dict[str, set[str]] = {
    Role.READONLY: set(),
    Role.WRITE: {"pipelines_app.pipeline", "runs_app.pipelinerun", "runs_app.scheduledjob"},
}
WRITABLE[Role.ADMIN] = READABLE[Role.ADMIN]

# Actions that are not model CRUD.
ACTIONS: dict[str, set[str]] = {
    Role.READONLY: set(),
    Role.WRITE: {"run", "cancel", "retry", "sync", "edit_schedule", "toggle_pipeline"},
}
ACTIONS[Role.ADMIN] = ACTIONS[Role.WRITE] | {"manage_users", "manage_secrets", "manage_tokens"}


def role_can_view(role: str, model_label: str) -> bool:
    return model_label in READABLE.get(role, set())


def role_can_change(role: str, model_label: str) -> bool:
    return model_label in WRITABLE.get(role, set())


def role_can(role: str, action: str) -> bool:
    return action in ACTIONS.get(role, set())


def role_has_perm(role: str, perm: str) -> bool:
    """Answer Django's `app_label.codename` permission strings from the role tables."""
    app_label, _, codename = perm.partition(".")
    action, _, model_name = codename.partition("_")
    label = f"{app_label}.{model_name}"
    if action == "view":
        return role_can_view(role, label)
    if action in {"add", "change", "delete"}:
        return role_can_change(role, label)
    return role_can(role, codename)


def role_has_module_perms(role: str, app_label: str) -> bool:
    return any(label.startswith(f"{app_label}.") for label in READABLE.get(role, set()))
