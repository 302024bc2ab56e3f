"""The audit log: one row per state-changing action, with its actor, written by the services
in the same transaction, per interface; nothing for a refused action; never a secret value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts_app.errors import LastAdminError, LoginRefused
from accounts_app.login_links import login_link_url
from accounts_app.models import Role
from accounts_app.services import SocialIdentity, token_issue, user_from_social_login, user_set_role
from audit_app.context import AuditContext
from audit_app.models import AuditEntry
from audit_app.services import audit_purge_old
from runs_app.engine.scheduler import fire_schedule
from runs_app.models import PipelineRun, RunStatus
from runs_app.schedule_services import scheduledjob_create
from runs_app.services import run_cancel
from tests.helpers_api import make_pipeline, make_run, make_user

pytestmark = pytest.mark.django_db

KEY = "a-long-webhook-key-0123456789"
SECRET_VALUE = "s3cr3t-value-never-logged"


def only_entry(**filters) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(**filters))
    assert len(entries) == 1, [(e.action, e.actor_name) for e in AuditEntry.objects.all()]
    return entries[0]


def token_client(role: str, name: str = "ci") -> tuple[APIClient, object]:
    user = make_user(role, username=f"{role.lower()}-user")
    _, jwt = token_issue(user=user, days=1, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt}")
    AuditEntry.objects.all().delete()  # the token's own creation is not under test here
    return client, user


def test_admin_cancel_records_the_user_and_ip_and_a_refused_cancel_records_nothing():
    pipeline = make_pipeline("etl")
    run = make_run(pipeline, RunStatus.PENDING)
    reader, writer = make_user(Role.READONLY, "reader"), make_user(Role.WRITE, "writer")
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.force_login(reader)
    assert client.post(f"/admin/runs_app/pipelinerun/{run.id}/cancel/").status_code == 403
    assert not AuditEntry.objects.exists()
    client.force_login(writer)
    client.post(f"/admin/runs_app/pipelinerun/{run.id}/cancel/")
    entry = only_entry(action="run.cancel")
    assert (entry.actor_type, entry.actor_name, entry.interface) == ("user", "writer", "admin")
    assert entry.actor_user_id == writer.id and entry.ip == "10.1.2.3"
    assert (entry.target_type, entry.target_id) == ("runs_app.pipelinerun", str(run.id))
    assert entry.details == {"was": "PENDING"}
    # Cancelling a finished run is refused: nothing more is recorded.
    client.post(f"/admin/runs_app/pipelinerun/{run.id}/cancel/")
    assert AuditEntry.objects.count() == 1


def test_api_trigger_records_the_token_and_a_rejected_trigger_records_nothing():
    make_pipeline("etl")
    client, user = token_client(Role.WRITE)
    bad = client.post("/api/pipelines/etl/runs/", {"parameters": {"1bad": "x"}}, format="json")
    assert bad.status_code == 400
    assert not AuditEntry.objects.exists()
    ok = client.post("/api/pipelines/etl/runs/", {"parameters": {"DAY": "mon"}}, format="json")
    assert ok.status_code == 201
    entry = only_entry(action="run.trigger")
    assert (entry.actor_type, entry.interface) == ("token", "api")
    assert entry.actor_name == "write-user (token ci)" and entry.actor_user_id == user.id
    assert entry.details["triggered_by"] == "manual"
    assert entry.details["parameters"] == ["DAY"]  # names, never values
    assert "mon" not in json.dumps(entry.details)


def test_webhook_trigger_records_the_webhook_and_a_wrong_key_records_nothing():
    make_pipeline("etl", {"webhook_key": KEY})
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert (
        client.post(
            "/webhooks/etl/not-the-key-at-all-000", content_type="application/json"
        ).status_code
        == 404
    )
    assert not AuditEntry.objects.exists()
    assert client.post(f"/webhooks/etl/{KEY}", content_type="application/json").status_code in (
        200,
        201,
        202,
    )
    entry = only_entry(action="run.trigger")
    assert (entry.actor_type, entry.actor_name, entry.interface) == (
        "webhook",
        "webhook etl",
        "webhook",
    )
    assert entry.ip == "203.0.113.9"


def test_a_schedule_tick_and_an_engine_retry_name_the_schedule_and_the_engine():
    from runs_app.services import run_claim_next
    from tests.helpers_engine import finish_claimed
    from tests.helpers_engine import make_pipeline as make_folder_pipeline

    pipeline = make_folder_pipeline("nightly", pipeline_json={"retry_attempts": 1})
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
    fire_schedule(str(job.id), fire_time=datetime.now(UTC).isoformat())
    tick = only_entry(action="run.trigger")
    assert (tick.actor_type, tick.interface) == ("schedule", "engine")
    assert tick.actor_name == f"schedule {job.id}"
    tick_run = run_claim_next(engine_id="engine-1")
    assert tick_run is not None and str(tick_run.id) == tick.target_id
    finish_claimed(tick_run, 1)
    retry = only_entry(action="run.retry")
    assert (retry.actor_type, retry.interface) == ("engine", "engine")


def test_secret_values_are_never_recorded_only_that_they_changed():
    client, _ = token_client(Role.ADMIN)
    assert (
        client.put("/api/secrets/API_KEY/", {"value": SECRET_VALUE}, format="json").status_code
        == 201
    )
    assert (
        client.put(
            "/api/secrets/API_KEY/", {"value": SECRET_VALUE + "2"}, format="json"
        ).status_code
        == 200
    )
    assert client.delete("/api/secrets/API_KEY/").status_code == 204
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["secret.create", "secret.update", "secret.delete"]
    assert AuditEntry.objects.get(action="secret.update").changes == {"value": "changed"}
    dump = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert SECRET_VALUE not in dump


def test_user_role_changes_are_recorded_with_old_and_new_and_a_refused_change_is_not():
    admin = make_user(Role.ADMIN, "root")
    other = make_user(Role.READONLY, "bob")
    context = AuditContext(interface="admin", actor_type="user", user=admin, name="root")
    with pytest.raises(LastAdminError):
        user_set_role(user=admin, role=Role.WRITE, audit=context)
    assert not AuditEntry.objects.exists()
    user_set_role(user=other, role=Role.WRITE, audit=context)
    entry = only_entry(action="user.role")
    assert entry.changes == {"role": {"old": "READONLY", "new": "WRITE"}}
    assert entry.target_repr == "bob"


def test_the_entry_is_in_the_same_transaction_as_the_change():
    run = make_run(make_pipeline("etl"), RunStatus.PENDING)
    with pytest.raises(RuntimeError), transaction.atomic():
        run_cancel(run=run)
        raise RuntimeError("the caller's transaction fails after the service returned")
    assert PipelineRun.objects.get(id=run.id).status == RunStatus.PENDING
    assert not AuditEntry.objects.exists()


def test_logins_and_failed_logins_are_recorded(client):
    user = make_user(Role.WRITE, "alice")
    link = urlsplit(login_link_url(user=user))
    response = client.get(link.path + (f"?{link.query}" if link.query else ""))
    assert response.status_code == 302
    login = only_entry(action="user.login")
    assert (login.interface, login.actor_name, login.details["via"]) == (
        "login",
        "alice",
        "login link",
    )
    stranger = SocialIdentity(provider="github", uid="999")
    with pytest.raises(LoginRefused):
        user_from_social_login(identity=stranger, audit=AuditContext.login(None))
    failed = only_entry(action="user.login_failed")
    assert failed.details == {"provider": "github", "reason": "no_access"}


def test_cleanupruns_records_its_deletions_as_counts(settings):
    settings.FASTFLOW_RETENTION_DAYS = 1
    settings.FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS = 0
    pipeline = make_pipeline("etl")
    for _ in range(3):
        make_run(pipeline, RunStatus.SUCCESS, queued_at=timezone.now() - timedelta(days=5))
    call_command("cleanupruns", stdout=StringIO())
    entry = only_entry(action="retention.delete")
    assert (entry.interface, entry.actor_name) == ("command", "manage.py cleanupruns")
    assert entry.details["runs"] == 3 and entry.target_id == "etl"


def test_the_audit_api_is_for_admins_with_filters():
    make_pipeline("etl")
    writer, _ = token_client(Role.WRITE, name="w")
    writer.post("/api/pipelines/etl/runs/", {}, format="json")
    assert writer.get("/api/audit/").status_code == 403
    admin = APIClient()
    _, jwt = token_issue(user=make_user(Role.ADMIN, "root"), days=1, name="a")
    admin.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt}")
    body = admin.get("/api/audit/", {"action": "run.trigger"}).json()
    assert body["count"] == 1 and body["results"][0]["actor_name"] == "write-user (token w)"
    assert admin.get("/api/audit/", {"interface": "webhook"}).json()["count"] == 0
    assert admin.get("/api/audit/", {"q": "token w"}).json()["count"] == 1
    refused = admin.get("/api/audit/", {"since": "not-a-date"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid"


def test_the_audit_admin_is_read_only_and_for_admins(client):
    make_user(Role.ADMIN, "root")
    client.force_login(make_user(Role.WRITE, "writer"))
    assert client.get("/admin/audit_app/auditentry/").status_code == 403
    admin = make_user(Role.ADMIN, "boss")
    client.force_login(admin)
    run_cancel(run=make_run(make_pipeline("etl")), audit=AuditContext.engine())
    page = client.get("/admin/audit_app/auditentry/?q=run.cancel")
    assert page.status_code == 200 and "run.cancel" in page.content.decode()
    entry = AuditEntry.objects.get()
    assert client.get(f"/admin/audit_app/auditentry/{entry.id}/change/").status_code == 200
    assert client.get("/admin/audit_app/auditentry/add/").status_code == 403
    response = client.post(f"/admin/audit_app/auditentry/{entry.id}/delete/", {"post": "yes"})
    assert response.status_code == 403 and AuditEntry.objects.filter(id=entry.id).exists()


def test_old_entries_are_purged_by_their_own_retention(settings):
    settings.FASTFLOW_AUDIT_RETENTION_DAYS = 30
    old = AuditEntry.objects.create(
        actor_type="system",
        interface="system",
        action="x",
        created_at=timezone.now() - timedelta(days=31),
    )
    new = AuditEntry.objects.create(actor_type="system", interface="system", action="y")
    assert audit_purge_old() == 1
    assert not AuditEntry.objects.filter(id=old.id).exists()
    assert AuditEntry.objects.filter(id=new.id).exists()


def test_deleting_a_user_in_the_admin_and_createadmin_are_recorded(client):
    root = make_user(Role.ADMIN, "root")
    bob = make_user(Role.READONLY, "bob")
    client.force_login(root)
    response = client.post(f"/admin/accounts_app/user/{bob.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    entry = only_entry(action="user.delete")
    assert (entry.actor_name, entry.target_repr, entry.details["role"]) == (
        "root",
        "bob",
        "READONLY",
    )
    call_command("createadmin", "carol", stdout=StringIO())
    created = only_entry(action="user.create")
    assert (created.interface, created.changes) == (
        "command",
        {"role": {"old": None, "new": "ADMIN"}},
    )
    call_command("createadmin", "carol", stdout=StringIO())  # already ADMIN: nothing changes
    assert AuditEntry.objects.filter(target_repr="carol").count() == 1
