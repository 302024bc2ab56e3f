""" "Run now" on the pipeline admin: the parameters form and the no-parameters action."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts_app.models import Role
from pipelines_app.models import Pipeline
from runs_app.forms import parse_parameter_lines
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import client_for, make_pipeline

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:pipelines_app_pipeline_changelist")
WITH_CONFIGS = {
    "schedules": [
        {"id": "nightly", "schedule_cron": "0 2 * * *"},
        {"id": "backfill"},
    ]
}


def run_url(pipeline: Pipeline) -> str:
    return reverse("admin:pipelines_app_pipeline_run", args=[pipeline.pk])


def test_the_form_offers_the_default_and_every_run_configuration() -> None:
    pipeline = make_pipeline("etl", WITH_CONFIGS)

    response = client_for(Role.WRITE).get(run_url(pipeline))

    assert response.status_code == 200
    assert 'value="" selected' in response.text
    assert 'value="nightly"' in response.text and 'value="backfill"' in response.text
    assert 'name="parameters"' in response.text


def test_it_queues_a_pending_run_with_parameters_and_opens_it() -> None:
    pipeline = make_pipeline("etl", WITH_CONFIGS)

    response = client_for(Role.WRITE).post(
        run_url(pipeline),
        {"run_config_id": "backfill", "parameters": "DAY=2030-01-01\n\nQUERY=a=b and c\n"},
    )

    run = PipelineRun.objects.get()
    assert run.status == RunStatus.PENDING
    assert run.triggered_by == "manual"
    assert run.run_config_id == "backfill"
    assert run.parameters == {"DAY": "2030-01-01", "QUERY": "a=b and c"}
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:runs_app_pipelinerun_change", args=[run.pk])


def test_a_malformed_line_is_shown_and_the_input_is_kept() -> None:
    pipeline = make_pipeline("etl")
    typed = "DAY=monday\njust some words\n"

    response = client_for(Role.WRITE).post(run_url(pipeline), {"parameters": typed})

    assert response.status_code == 200
    assert "Line 2: expected KEY=value, got &#x27;just some words&#x27;." in response.text
    assert "DAY=monday\njust some words" in response.text
    assert not PipelineRun.objects.exists()


def test_an_invalid_parameter_name_gets_the_services_message() -> None:
    pipeline = make_pipeline("etl")

    response = client_for(Role.WRITE).post(run_url(pipeline), {"parameters": "1DAY=monday"})

    assert response.status_code == 200
    assert "invalid parameter name &#x27;1DAY&#x27;" in response.text
    assert not PipelineRun.objects.exists()


def test_too_many_parameters_are_refused(settings) -> None:
    settings.FASTFLOW_PARAMETERS_MAX_COUNT = 2
    pipeline = make_pipeline("etl")

    response = client_for(Role.WRITE).post(run_url(pipeline), {"parameters": "A=1\nB=2\nC=3"})

    assert "too many parameters: 3 given, at most 2 allowed" in response.text
    assert not PipelineRun.objects.exists()


def test_a_disabled_pipeline_is_refused_on_the_form() -> None:
    pipeline = make_pipeline("etl", enabled=False)
    client = client_for(Role.WRITE)

    page = client.get(run_url(pipeline))
    response = client.post(run_url(pipeline), {"parameters": "DAY=monday"})

    assert "This pipeline cannot run now" in page.text
    assert response.status_code == 200
    assert "pipeline &#x27;etl&#x27; is disabled" in response.text
    assert "DAY=monday" in response.text
    assert not PipelineRun.objects.exists()


def test_readonly_users_get_403_and_no_button() -> None:
    pipeline = make_pipeline("etl")
    client = client_for(Role.READONLY)

    page = client.get(reverse("admin:pipelines_app_pipeline_change", args=[pipeline.pk]))
    get = client.get(run_url(pipeline))
    post = client.post(run_url(pipeline), {"parameters": ""})

    assert page.status_code == 200 and "ff-run-now" not in page.text
    assert get.status_code == 403 and post.status_code == 403
    assert not PipelineRun.objects.exists()


def test_writers_see_the_run_now_button() -> None:
    pipeline = make_pipeline("etl")

    page = client_for(Role.WRITE).get(
        reverse("admin:pipelines_app_pipeline_change", args=[pipeline.pk])
    )

    assert 'id="ff-run-now"' in page.text
    assert run_url(pipeline) in page.text


def test_the_changelist_action_runs_pipelines_without_parameters() -> None:
    make_pipeline("etl")
    make_pipeline("report")
    make_pipeline("broken", enabled=False)

    response = client_for(Role.WRITE).post(
        CHANGELIST,
        {"action": "run_now_without_parameters", "_selected_action": ["etl", "report", "broken"]},
        follow=True,
    )

    queued = PipelineRun.objects.order_by("pipeline_id")
    assert [r.pipeline_id for r in queued] == ["etl", "report"]
    assert all(r.parameters == {} and r.status == RunStatus.PENDING for r in queued)
    assert "2 run(s) queued." in response.text
    assert "broken: pipeline &#x27;broken&#x27; is disabled" in response.text


def test_readonly_users_do_not_get_the_action() -> None:
    make_pipeline("etl")
    client = client_for(Role.READONLY)

    page = client.get(CHANGELIST)
    client.post(CHANGELIST, {"action": "run_now_without_parameters", "_selected_action": ["etl"]})

    assert "run_now_without_parameters" not in page.text
    assert not PipelineRun.objects.exists()


def test_parameter_lines_reject_duplicates() -> None:
    with pytest.raises(ValidationError, match="parameter .A. is given twice"):
        parse_parameter_lines("A=1\nA=2")


# --- the documented variables (default_env) -----------------------------------------------------

DOCUMENTED = {
    "default_env": {"MODE": "full", "LIMIT": "100"},
    "secrets": ["DB_PASSWORD"],
    "schedules": [{"id": "quick", "default_env": {"LIMIT": "5", "DRY_RUN": "1"}}],
}


def test_the_documented_variables_are_prefilled_with_their_defaults() -> None:
    pipeline = make_pipeline("etl", DOCUMENTED)

    text = client_for(Role.WRITE).get(run_url(pipeline)).text

    assert 'name="param_MODE" value="full"' in text
    assert 'name="param_LIMIT" value="100"' in text
    assert 'name="param_DRY_RUN"' in text and "Not set by this run configuration." in text
    assert "Default: &#x27;full&#x27; (pipeline.json)" in text
    # Each configuration's defaults for the page's script, and the variables no field changes.
    assert '"quick": {"MODE": "full", "LIMIT": "5", "DRY_RUN": "1"}' in text
    assert "<code>DB_PASSWORD</code> (secret)" in text


def test_only_changed_values_become_parameters() -> None:
    pipeline = make_pipeline("etl", DOCUMENTED)

    client_for(Role.WRITE).post(
        run_url(pipeline),
        {
            "run_config_id": "quick",
            "param_MODE": "full",  # the default: not a parameter
            "param_LIMIT": "7",  # changed from quick's 5
            "param_DRY_RUN": "1",
            "parameters": "EXTRA=yes",
        },
    )

    run = PipelineRun.objects.get()
    assert run.run_config_id == "quick"
    assert run.parameters == {"LIMIT": "7", "EXTRA": "yes"}


def test_a_variable_given_in_a_field_and_a_line_is_refused() -> None:
    pipeline = make_pipeline("etl", DOCUMENTED)

    response = client_for(Role.WRITE).post(
        run_url(pipeline), {"param_MODE": "delta", "param_LIMIT": "100", "parameters": "MODE=x"}
    )

    assert response.status_code == 200
    assert "Given above as well: MODE. Set each variable once." in response.text
    assert 'value="delta"' in response.text  # what was typed stays
    assert not PipelineRun.objects.exists()


def test_fields_a_request_does_not_send_keep_their_defaults() -> None:
    pipeline = make_pipeline("etl", DOCUMENTED)

    client_for(Role.WRITE).post(run_url(pipeline), {"parameters": "DAY=monday"})

    assert PipelineRun.objects.get().parameters == {"DAY": "monday"}
