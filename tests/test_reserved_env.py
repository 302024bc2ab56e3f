"""Run parameters cannot set loader, interpreter or engine variables, never replace a secret or
an `encrypted_env` value, and the recorded `env_vars` are what the process got (issue 8, item 2).

Every interface (admin "Run now", API, webhook, pipeline.json) goes through one check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts_app.models import Role
from pipelines_app.env_names import reserved_env_reason
from pipelines_app.spec import SpecError, parse_pipeline_json
from runs_app.environment import RunEnvironmentError, run_environment
from runs_app.errors import InvalidRunRequest
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue, run_parameters_validate
from secrets_app import crypto
from secrets_app.services import secret_set
from tests.helpers_api import assert_error, client_for, make_pipeline

KEY = "k3y-0f-the-etl-pipeline"
# What the attack in the issue used, and what else the runner (uv, Python, the loader, TLS,
# git, proxies) reads before or around the pipeline's own code.
RESERVED = [
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONWARNINGS",
    "PYTHONINSPECT",
    "PYTHON_BASIC_REPL",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "GLIBC_TUNABLES",
    "UV_CACHE_DIR",
    "UV_INDEX_URL",
    "UV_PYTHON_DOWNLOADS",
    "PATH",
    "HOME",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "OPENSSL_CONF",
    "FASTFLOW_RUN_ID",
    "FASTFLOW_PIPELINE",
    "FASTFLOW_ANYTHING",
    "HTTPS_PROXY",
    "http_proxy",
    "NO_PROXY",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_COUNT",
    "VIRTUAL_ENV",
    "BASH_ENV",
]
ALLOWED = ["DAY", "ENV", "API_URL", "MY_PATH", "HOMEPAGE", "UVICORN_PORT", "LD"]


@pytest.mark.parametrize("name", RESERVED)
def test_the_reserved_set_covers_loader_interpreter_and_engine_variables(name):
    assert reserved_env_reason(name), name


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_names_are_not_reserved(name):
    assert reserved_env_reason(name) is None


def test_every_variable_an_executor_sets_over_the_runs_own_is_reserved(settings):
    """Otherwise a run could set it, the executor would silently override it, and `env_vars`
    would record a value the process never had."""
    from runs_app.engine.docker_executor import engine_env
    from runs_app.engine.local_executor import local_env

    settings.FASTFLOW_RUNNER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
    home = Path("/tmp/home")
    probe = local_env(run_id="r", pipeline_name="p", user_env={}, home=home)
    wanted = {name: "from-the-run" for name in probe}
    real = local_env(run_id="r", pipeline_name="p", user_env=wanted, home=home)
    overridden = {name for name in wanted if real[name] != "from-the-run"}
    # The Docker executor drops the run's PATH and puts engine_env() over the rest.
    overridden |= {"PATH", *engine_env(run_id="r", pipeline_name="p")}

    assert "UV_CACHE_DIR" in overridden and "SSL_CERT_FILE" in overridden
    assert {name for name in overridden if not reserved_env_reason(name)} == set()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["LD_PRELOAD", "PYTHONSTARTUP", "FASTFLOW_RUN_ID", "path"])
def test_the_service_refuses_a_reserved_parameter_naming_it(name):
    with pytest.raises(InvalidRunRequest) as refused:
        run_parameters_validate(parameters={"DAY": "monday", name: "x"})

    assert set(refused.value.fields) == {f"parameters.{name}"}
    assert name in refused.value.fields[f"parameters.{name}"]
    assert "reserved" in str(refused.value)


@pytest.mark.django_db
def test_the_api_refuses_a_reserved_parameter_with_400():
    make_pipeline("etl")

    response = client_for("WRITE").post(
        "/api/pipelines/etl/runs/",
        {"parameters": {"LD_PRELOAD": "/tmp/evil.so", "DAY": "x"}},
        format="json",
    )

    body = assert_error(response, 400, "invalid")
    assert list(body["fields"]) == ["parameters.LD_PRELOAD"]
    assert "LD_PRELOAD" in body["detail"] or "LD_PRELOAD" in body["fields"]["parameters.LD_PRELOAD"]
    assert PipelineRun.objects.count() == 0


@pytest.mark.django_db
def test_the_webhook_refuses_a_reserved_parameter_with_400():
    make_pipeline("etl", {"webhook_key": KEY})

    response = Client().post(
        f"/webhooks/etl/{KEY}",
        data=json.dumps({"PYTHONPATH": "/tmp/planted"}),
        content_type="application/json",
    )

    body = assert_error(response, 400, "invalid")
    assert "PYTHONPATH" in body["fields"]["parameters.PYTHONPATH"]
    assert PipelineRun.objects.count() == 0


@pytest.mark.django_db
def test_the_admin_run_now_form_refuses_a_reserved_parameter():
    from tests.helpers_admin import client_for as admin_client
    from tests.helpers_admin import make_pipeline as admin_pipeline

    pipeline = admin_pipeline("etl")
    url = reverse("admin:pipelines_app_pipeline_run", args=[pipeline.pk])

    response = admin_client(Role.WRITE).post(
        url, {"run_config_id": "", "parameters": "DAY=monday\nUV_INDEX_URL=http://evil/simple"}
    )

    assert response.status_code == 200
    assert "UV_INDEX_URL" in response.text and "reserved" in response.text
    assert PipelineRun.objects.count() == 0


@pytest.mark.parametrize(
    ("pipeline_json", "key"),
    [
        ({"default_env": {"PYTHONPATH": "/app/lib"}}, "default_env"),
        ({"encrypted_env": {"LD_PRELOAD": "token"}}, "encrypted_env"),
        ({"secrets": ["SSL_CERT_FILE"]}, "secrets"),
        (
            {"schedules": [{"id": "nightly", "default_env": {"UV_OFFLINE": "0"}}]},
            "schedules[0].default_env",
        ),
        (
            {"schedules": [{"id": "nightly", "encrypted_env": {"FASTFLOW_RUN_ID": "t"}}]},
            "schedules[0].encrypted_env",
        ),
    ],
)
def test_pipeline_json_setting_a_reserved_variable_is_a_discovery_error(pipeline_json, key):
    with pytest.raises(SpecError) as refused:
        parse_pipeline_json(pipeline_json, source="etl/pipeline.json")

    assert f"etl/pipeline.json: key '{key}'" in str(refused.value)
    assert "reserved" in str(refused.value)


@pytest.mark.django_db
def test_a_pipeline_json_with_a_reserved_variable_is_broken_after_discovery(make_pipeline_dir):
    from pipelines_app.models import Pipeline
    from pipelines_app.services import pipelines_sync

    make_pipeline_dir("etl", pipeline_json={"default_env": {"HOME": "/app"}})
    pipelines_sync()

    pipeline = Pipeline.objects.get(pipeline_name="etl")
    assert "HOME" in pipeline.discovery_error and "reserved" in pipeline.discovery_error
    assert not pipeline.is_runnable


# --- a parameter never replaces a secret or an encrypted_env value -----------------------------


@pytest.fixture
def guarded(db):
    secret_set(key="API_KEY", value="the-real-api-key")
    secret_set(key="REGION", value="eu-west-1", is_parameter=True)
    return make_pipeline(
        "guarded",
        {
            "webhook_key": KEY,
            "secrets": ["API_KEY", "REGION"],
            "default_env": {"DAY": "monday"},
            "encrypted_env": {"DB_PASSWORD": crypto.encrypt("db-pass")},
            "schedules": [
                {"id": "nightly", "encrypted_env": {"NIGHTLY_TOKEN": crypto.encrypt("n-tok")}}
            ],
        },
    )


@pytest.mark.parametrize(
    ("name", "run_config_id", "what"),
    [
        ("API_KEY", None, "secret"),
        ("REGION", None, "secret"),
        ("DB_PASSWORD", None, "encrypted_env"),
        ("NIGHTLY_TOKEN", "nightly", "encrypted_env"),
    ],
)
def test_a_parameter_never_replaces_a_secret_or_encrypted_value(guarded, name, run_config_id, what):
    with pytest.raises(InvalidRunRequest) as refused:
        run_enqueue(
            pipeline=guarded,
            triggered_by="manual",
            parameters={name: "attacker"},
            run_config_id=run_config_id,
        )

    message = refused.value.fields[f"parameters.{name}"]
    assert name in message and what in message
    assert PipelineRun.objects.count() == 0


def test_a_parameter_of_another_run_configurations_encrypted_name_is_fine(guarded):
    run = run_enqueue(pipeline=guarded, triggered_by="manual", parameters={"NIGHTLY_TOKEN": "mine"})

    assert run.parameters == {"NIGHTLY_TOKEN": "mine"}


def test_a_parameter_still_overrides_a_default(guarded):
    run = run_enqueue(pipeline=guarded, triggered_by="manual", parameters={"DAY": "friday"})

    assert run_environment(run=run).env["DAY"] == "friday"


def test_the_webhook_refuses_the_conflict_naming_the_key(guarded):
    response = Client().post(
        f"/webhooks/guarded/{KEY}",
        data=json.dumps({"API_KEY": "attacker"}),
        content_type="application/json",
    )

    body = assert_error(response, 400, "invalid")
    assert "API_KEY" in body["fields"]["parameters.API_KEY"]


def test_the_api_refuses_the_conflict_naming_the_key(guarded):
    response = client_for("WRITE").post(
        "/api/pipelines/guarded/runs/", {"parameters": {"DB_PASSWORD": "x"}}, format="json"
    )

    body = assert_error(response, 400, "invalid")
    assert "DB_PASSWORD" in body["fields"]["parameters.DB_PASSWORD"]


def test_a_run_queued_before_a_conflict_appeared_fails_at_start_instead(guarded):
    run = run_enqueue(pipeline=guarded, triggered_by="manual", parameters={"LATER": "x"})
    secret_set(key="LATER", value="added-since")
    guarded.metadata = {**guarded.metadata, "secrets": ["API_KEY", "REGION", "LATER"]}
    guarded.save(update_fields=["metadata"])

    with pytest.raises(RunEnvironmentError, match="LATER"):
        run_environment(run=PipelineRun.objects.get(id=run.id))  # as the engine claims it


def test_a_stored_run_with_a_reserved_parameter_never_gets_it(guarded):
    """A row written before this check existed (or by hand) is refused at start too."""
    run = PipelineRun.objects.create(pipeline=guarded, parameters={"LD_PRELOAD": "/tmp/x.so"})

    with pytest.raises(RunEnvironmentError, match="LD_PRELOAD"):
        run_environment(run=run)


def test_retrying_a_run_with_a_now_conflicting_parameter_is_refused(guarded):
    from runs_app.services import run_retry

    old = PipelineRun.objects.create(
        pipeline=guarded, status=RunStatus.FAILED, parameters={"API_KEY": "x"}
    )

    with pytest.raises(InvalidRunRequest, match="API_KEY"):
        run_retry(run=old)


# --- what is recorded is what the process got (both executors) -----------------------------

PRINT_ENV = (
    "import hashlib, json, os\n"
    "digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in os.environ.items()}\n"
    "print('ENV', json.dumps(digests))\n"
)


def digest(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


def check_recorded_env_is_what_the_process_got(executor: str) -> None:
    from tests.helpers_engine import ThreadEngine, log_text, wait_until_finished
    from tests.helpers_engine import make_pipeline as make_engine_pipeline

    secret_set(key="API_KEY", value="the-real-api-key")
    pipeline = make_engine_pipeline(
        "printenv",
        PRINT_ENV,
        pipeline_json={
            "secrets": ["API_KEY"],
            "default_env": {"DAY": "monday", "LEVEL": "info"},
            "encrypted_env": {"DB_PASSWORD": crypto.encrypt("db-pass")},
        },
    )
    with pytest.raises(InvalidRunRequest, match="FASTFLOW_RUN_ID"):
        run_enqueue(
            pipeline=pipeline, triggered_by="manual", parameters={"FASTFLOW_RUN_ID": "fake"}
        )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual", parameters={"DAY": "friday"})

    with ThreadEngine(executor=executor):
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    line = next(x for x in log_text(run).splitlines() if " ENV {" in x)
    real = json.loads(line.split(" ENV ", 1)[1])
    secrets = {"API_KEY": "the-real-api-key", "DB_PASSWORD": "db-pass"}
    assert run.env_vars["FASTFLOW_RUN_ID"] == str(run.id)
    assert run.env_vars["DAY"] == "friday" and run.env_vars["API_KEY"] == "***"
    for name, recorded in run.env_vars.items():
        expected = secrets[name] if recorded == "***" else recorded
        assert real.get(name) == digest(expected), f"{name}: recorded {recorded!r}"


@pytest.mark.django_db(transaction=True)
def test_the_recorded_env_is_what_a_local_process_got():
    check_recorded_env_is_what_the_process_got("local")


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_recorded_env_is_what_a_container_got(docker_engine, settings):
    from tests.helpers_executor import use_runner_image

    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    check_recorded_env_is_what_the_process_got("docker")
