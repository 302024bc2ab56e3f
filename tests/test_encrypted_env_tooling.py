"""encrypted_env: values are made with `manage.py encryptvalue`, the admin's Encrypt a value
page or the API, and discovery breaks a pipeline (naming the key) whose value no configured
key decrypts, before any run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.errors import PipelineNotRunnable
from runs_app.models import PipelineRun
from runs_app.services import run_enqueue
from secrets_app import crypto
from tests.conftest import write_pipeline
from tests.helpers_admin import client_for
from tests.helpers_api import assert_error
from tests.helpers_api import client_for as api_client_for

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
# The template's full_config_example ships placeholders where ciphertext belongs.
PLACEHOLDERS = {
    "encrypted_env": {"API_KEY": "<in-UI-Fuer-pipeline.json-verschluesseln-erzeugen>"},
    "schedules": [
        {
            "id": "prod",
            "schedule_cron": "0 8 * * *",
            "encrypted_env": {"PROD_API_KEY": "<in-UI-verschluesseln-fuer-diesen-Schedule>"},
        }
    ],
}


def sync_one(pipelines_dir: Path, name: str, pipeline_json: dict) -> Pipeline:
    write_pipeline(pipelines_dir, name, pipeline_json=pipeline_json)
    pipelines_sync()
    return Pipeline.objects.get(pk=name)


def test_a_placeholder_breaks_the_pipeline_at_discovery_naming_each_key(pipelines_dir):
    pipeline = sync_one(pipelines_dir, "full_config", PLACEHOLDERS)

    assert pipeline.state == "broken"
    assert "key 'encrypted_env.API_KEY': cannot be decrypted with any configured " in (
        pipeline.discovery_error
    )
    assert "key 'schedules[0].encrypted_env.PROD_API_KEY': cannot be decrypted" in (
        pipeline.discovery_error
    )
    assert "<in-UI" not in pipeline.discovery_error  # the value itself is never echoed
    with pytest.raises(PipelineNotRunnable, match="encrypted_env.API_KEY"):
        run_enqueue(pipeline=pipeline, triggered_by="manual")
    assert not PipelineRun.objects.exists()


def test_values_of_any_configured_key_pass_and_a_dropped_key_breaks_it(pipelines_dir, settings):
    old = Fernet.generate_key().decode()
    new = Fernet.generate_key().decode()
    settings.FASTFLOW_ENCRYPTION_KEYS = [old]
    token = crypto.encrypt("v")
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]  # rotated: the old key still decrypts

    assert sync_one(pipelines_dir, "ok", {"encrypted_env": {"K": token}}).state == "ready"

    settings.FASTFLOW_ENCRYPTION_KEYS = [new]
    pipelines_sync()
    assert "key 'encrypted_env.K': cannot be decrypted" in (
        Pipeline.objects.get(pk="ok").discovery_error
    )


def test_encryptvalue_reads_stdin_and_prints_a_token_or_a_line_to_paste(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret value\n"))
    call_command("encryptvalue", stdout=out)
    assert crypto.decrypt(out.getvalue().strip()) == "s3cret value"

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("line one\nline two"))
    call_command("encryptvalue", "--name", "API_KEY", stdout=out)
    pasted = json.loads("{" + out.getvalue().strip() + "}")
    assert crypto.decrypt(pasted["API_KEY"]) == "line one\nline two"

    for stdin, name, message in (("\n", "", "Enter the value"), ("v", "1BAD", "not a valid")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(CommandError, match=message):
            call_command("encryptvalue", "--name", name, stdout=io.StringIO())


def test_encryptvalue_as_a_real_process_makes_a_value_discovery_accepts(pipelines_dir, settings):
    env = {
        **os.environ,
        "FASTFLOW_ENCRYPTION_KEY": ",".join(settings.FASTFLOW_ENCRYPTION_KEYS),
        "FASTFLOW_DATA_DIR": str(settings.DATA_DIR),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "encryptvalue", "--name", "TOKEN"],
        input="from-the-shell\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "from-the-shell" not in done.stdout
    encrypted_env = json.loads("{" + done.stdout.strip() + "}")

    pipeline = sync_one(pipelines_dir, "pasted", {"encrypted_env": encrypted_env})

    assert pipeline.state == "ready", pipeline.discovery_error


def test_the_admin_page_encrypts_for_write_and_never_shows_the_value_again():
    page = "/admin/secrets_app/secret/encrypt-value/"
    assert client_for("READONLY").get(page).status_code == 403
    writer = client_for("WRITE")
    assert writer.get(page).status_code == 200

    response = writer.post(page, {"name": "DB_PASSWORD", "value": "hunter2-plain"})

    body = response.content.decode()
    assert response.status_code == 200
    assert "hunter2-plain" not in body
    assert "no-store" in response["Cache-Control"]
    token = response.context["token"]
    assert crypto.decrypt(token) == "hunter2-plain"
    assert f'"DB_PASSWORD": "{token}"' in response.context["snippet"]
    bad = writer.post(page, {"name": "no spaces", "value": "x"})
    assert "not a valid environment variable name" in bad.content.decode()


def test_the_pipeline_list_links_the_page_and_a_broken_pipeline_points_to_it(pipelines_dir):
    sync_one(pipelines_dir, "full_config", PLACEHOLDERS)
    writer = client_for("WRITE")

    listing = writer.get("/admin/pipelines_app/pipeline/").content.decode()
    detail = writer.get("/admin/pipelines_app/pipeline/full_config/change/").content.decode()

    assert 'href="/admin/secrets_app/secret/encrypt-value/"' in listing
    assert "Encrypt a value</a> page" in detail
    assert 'href="/admin/secrets_app/secret/encrypt-value/"' not in (
        client_for("READONLY").get("/admin/pipelines_app/pipeline/").content.decode()
    )


def test_the_api_encrypts_and_refuses_what_a_run_could_not_receive():
    client = api_client_for("WRITE")

    made = client.post("/api/encrypted-values/", {"value": "v4lue", "name": "K"}, format="json")

    assert made.status_code == 201
    assert crypto.decrypt(made.json()["encrypted"]) == "v4lue"
    assert made.json()["snippet"] == f'"K": "{made.json()["encrypted"]}"'
    refused = client.post("/api/encrypted-values/", {"value": "a\x00b"}, format="json")
    assert_error(refused, 400)
