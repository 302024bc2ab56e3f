"""Every admin page and every API endpoint × every role → the status the role tables imply.

Pages and endpoints are discovered (`admin.site._registry`, the API URL resolver), so what other
apps add later is covered without touching this file. What a role may do comes from the role
tables; a ModelAdmin may only narrow that down for everybody (e.g. "no add page at all"), never
grant a role more than the table does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import models
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from accounts_app.api_permissions import ReadOnlyRole, RoleRequired
from accounts_app.models import Role, User
from accounts_app.roles import role_can_do
from accounts_app.services import invitation_create, token_issue
from pipelines_app.models import Pipeline
from runs_app.models import EngineInstance, PipelineRun, ScheduledJob
from secrets_app.models import Secret
from tests.helpers_accounts import bearer, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.helpers_accounts_urls")]

ROLES = (Role.READONLY, Role.WRITE, Role.ADMIN)
RANK = {Role.READONLY: 0, Role.WRITE: 1, Role.ADMIN: 2}


@dataclass
class World:
    users: dict[str, User]
    tokens: dict[str, str]


@pytest.fixture
def world() -> World:
    users = {role: make_user(f"user-{role.lower()}", role=role) for role in ROLES}
    users["blocked"] = make_user("user-blocked", role=Role.ADMIN)
    tokens = {name: token_issue(user=user, days=1)[1] for name, user in users.items()}
    User.objects.filter(id=users["blocked"].id).update(blocked=True)
    seed_rows(users[Role.ADMIN])
    return World(users=users, tokens=tokens)


def seed_rows(admin_user: User) -> None:
    """One row for each model whose shape we know, so change pages render a real object."""
    pipeline = Pipeline.objects.create(pipeline_name="matrix")
    PipelineRun.objects.create(pipeline=pipeline)
    ScheduledJob.objects.create(pipeline=pipeline, trigger_type="interval", trigger_value="60")
    EngineInstance.objects.create(id="engine-1", hostname="h", pid=1, executor="local")
    Secret.objects.create(key="MATRIX_SECRET", value="ciphertext")
    invitation_create(email="matrix@example.com", role=Role.READONLY, created_by=admin_user)


def admin_models() -> list[type[models.Model]]:
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


def ceiling(
    model: type[models.Model], action: str, obj: models.Model | None, admin_user: User
) -> bool:
    """What the ModelAdmin allows at most (asked as an ADMIN): narrows, never widens."""
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    if action == "add":
        return model_admin.has_add_permission(request)
    return model_admin.has_view_or_change_permission(request, obj)


def expected(role: str, model: type[models.Model], action: str, obj, admin_user: User) -> int:
    label = model._meta.label_lower
    if action == "add":
        allowed = role_can_do(role, "add", label)
    else:
        allowed = role_can_do(role, "view", label) or role_can_do(role, "change", label)
    allowed = allowed and ceiling(model, action, obj, admin_user)
    if not allowed:
        return 403
    return 302 if action == "change" and obj is None else 200


def pages(model: type[models.Model]) -> list[tuple[str, str, models.Model | None]]:
    opts = model._meta
    obj = model._default_manager.order_by("pk").first()
    pk = obj.pk if obj is not None else "0"
    base = f"admin:{opts.app_label}_{opts.model_name}"
    return [
        ("changelist", reverse(f"{base}_changelist"), None),
        ("add", reverse(f"{base}_add"), None),
        ("change", reverse(f"{base}_change", args=[quote(pk)]), obj),
    ]


def test_the_matrix_covers_the_accounts_models():
    labels = {m._meta.label for m in admin_models()}
    assert {"accounts_app.User", "accounts_app.Invitation", "accounts_app.ApiToken"} <= labels
    # Hidden on purpose: roles replace groups; providers come from the environment.
    assert not labels & {"auth.Group", "socialaccount.SocialApp", "socialaccount.SocialToken"}


@pytest.mark.parametrize("model", admin_models(), ids=lambda m: m._meta.label)
def test_every_admin_page_answers_each_role_as_the_role_tables_say(world, model):
    admin_user = world.users[Role.ADMIN]
    failures = []
    for action, url, obj in pages(model):
        anonymous = Client().get(url)
        if anonymous.status_code != 302 or "/admin/login/" not in anonymous["Location"]:
            failures.append((action, "anonymous", anonymous.status_code))
        blocked = Client()
        blocked.force_login(world.users["blocked"])
        if blocked.get(url).status_code != 302:
            failures.append((action, "blocked", blocked.get(url).status_code))
        for role in ROLES:
            client = Client()
            client.force_login(world.users[role])
            status = client.get(url).status_code
            want = expected(role, model, action, obj, admin_user)
            if status != want:
                failures.append((action, role, status, want))
    assert failures == [], f"{model._meta.label}: (page, role, got, expected) {failures}"


@pytest.mark.parametrize("role", ROLES)
def test_the_admin_index_and_account_page_open_for_every_role(world, role):
    client = Client()
    client.force_login(world.users[role])
    assert client.get("/admin/").status_code == 200
    assert client.get("/account/").status_code == 200


def test_readonly_never_sees_secrets_users_invitations_or_sessions(world):
    client = Client()
    client.force_login(world.users[Role.READONLY])
    for name in (
        "secrets_app/secret",
        "accounts_app/user",
        "accounts_app/invitation",
        "accounts_app/apitoken",
    ):
        assert client.get(f"/admin/{name}/").status_code == 403, name
    index = client.get("/admin/").content.decode()
    assert "/admin/secrets_app/" not in index
    assert "/admin/accounts_app/" not in index


# --- API ----------------------------------------------------------------------------------------

_CONVERTER = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")
# Fixed values keep test ids stable; no row has them, so permitted calls end in 400/404.
_SAMPLE = {"uuid": "00000000-0000-4000-8000-00000000beef", "int": "1"}


def _walk(patterns, prefix: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def api_endpoints() -> list[tuple[str, type[APIView], str]]:
    """(url, view class, method) for every APIView under /api/, each route once."""
    resolver = get_resolver("tests.helpers_accounts_urls")
    seen, found = set(), []
    for route, callback in _walk(resolver.url_patterns):
        view_class = getattr(callback, "view_class", None)
        if not route.startswith("api/") or route in seen:
            continue
        if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
            continue
        seen.add(route)
        url = "/" + _CONVERTER.sub(lambda m: _SAMPLE.get(m["conv"], "matrix-x"), route)
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view_class, method):
                found.append((url, view_class, method.upper()))
    return found


def role_allowed(view_class: type[APIView], role: str, method: str) -> bool | None:
    """What the declared role permission says; None when the view is not role-guarded."""
    classes = list(view_class.permission_classes)
    if not classes or not all(issubclass(c, RoleRequired) for c in classes):
        return None
    for cls in classes:
        if issubclass(cls, ReadOnlyRole):
            ok = method in SAFE_METHODS
        else:
            safe_min = cls.safe_minimum_role if method in SAFE_METHODS else None
            ok = RANK[role] >= RANK[safe_min or cls.minimum_role]
        if not ok:
            return False
    return True


ACCOUNTS_API = {
    # (route prefix, method) → minimum role, straight from the issue text.
    ("/api/users/", "GET"): Role.ADMIN,
    ("/api/users/", "PATCH"): Role.ADMIN,
    ("/api/invitations/", "GET"): Role.ADMIN,
    ("/api/invitations/", "POST"): Role.ADMIN,
    ("/api/invitations/", "DELETE"): Role.ADMIN,
    ("/api/tokens/", "GET"): Role.READONLY,
    ("/api/tokens/", "POST"): Role.READONLY,
    ("/api/tokens/", "DELETE"): Role.READONLY,
}


def test_the_accounts_endpoints_are_declared_as_the_issue_says():
    endpoints = {(url, method): view for url, view, method in api_endpoints()}
    for (prefix, method), minimum in ACCOUNTS_API.items():
        matches = [v for (url, m), v in endpoints.items() if url.startswith(prefix) and m == method]
        assert matches, (prefix, method)
        for view in matches:
            for role in ROLES:
                assert role_allowed(view, role, method) == (RANK[role] >= RANK[minimum]), (
                    prefix,
                    method,
                    role,
                )


# Open to anybody on purpose: the OpenAPI schema and its page document the API, they expose no data.
PUBLIC_API = {
    ("/api/schema/", "SpectacularAPIView", "GET"),
    ("/api/docs/", "SpectacularSwaggerView", "GET"),
}


def test_the_only_endpoints_without_a_role_permission_are_the_public_ones():
    public = {
        (url, view.__name__, method)
        for url, view, method in api_endpoints()
        if role_allowed(view, Role.ADMIN, method) is None
    }
    assert public == PUBLIC_API


@pytest.mark.parametrize(
    ("url", "view_class", "method"),
    [e for e in api_endpoints() if role_allowed(e[1], Role.ADMIN, e[2]) is not None],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_every_api_endpoint_answers_each_role_as_declared(world, url, view_class, method):
    client = Client()
    send = getattr(client, method.lower())

    anonymous = send(url, {}, content_type="application/json")
    blocked = send(url, {}, content_type="application/json", **bearer(world.tokens["blocked"]))
    assert anonymous.status_code == 401, anonymous.content
    assert blocked.status_code == 401, blocked.content
    for role in ROLES:
        response = send(url, {}, content_type="application/json", **bearer(world.tokens[role]))
        if role_allowed(view_class, role, method):
            assert response.status_code not in {401, 403}, (role, response.content)
        else:
            assert response.status_code == 403, (role, response.status_code, response.content)
            assert response.json()["error"] == "permission_denied"


@pytest.mark.parametrize("role", ROLES)
def test_the_admin_header_links_to_the_account_page(world, role):
    client = Client()
    client.force_login(world.users[role])
    assert b'href="/account/"' in client.get("/admin/").content
