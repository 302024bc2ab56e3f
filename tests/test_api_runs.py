from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from runs_app.models import PipelineRun, RunStatus
from tests.helpers_api import assert_error, client_for, make_pipeline, make_run, run_log_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader():
    return client_for("READONLY")


@pytest.fixture
def writer():
    return client_for("WRITE")


def ids_of(page: dict) -> list[str]:
    return [r["id"] for r in page["results"]]


def test_it_lists_runs_newest_first_by_cursor_without_a_count(reader):
    pipeline = make_pipeline("etl")
    now = timezone.now()
    runs = [make_run(pipeline, queued_at=now - timedelta(minutes=i)) for i in range(5)]

    first = reader.get("/api/runs/", {"page_size": 2}).json()
    second = reader.get(first["next"]).json()
    last = reader.get(second["next"]).json()
    back = reader.get(second["previous"]).json()

    assert set(first) == {"next", "previous", "results"}  # no COUNT(*) over the history
    assert ids_of(first) == [str(runs[0].id), str(runs[1].id)]
    assert ids_of(second) == [str(runs[2].id), str(runs[3].id)]
    assert ids_of(last) == [str(runs[4].id)] and last["next"] is None
    assert first["previous"] is None and ids_of(back) == ids_of(first)


def test_a_page_does_not_shift_when_new_runs_arrive(reader):
    pipeline = make_pipeline("etl")
    now = timezone.now()
    runs = [make_run(pipeline, queued_at=now - timedelta(minutes=i)) for i in range(4)]
    first = reader.get("/api/runs/", {"page_size": 2}).json()

    make_run(pipeline, queued_at=now + timedelta(minutes=1))
    second = reader.get(first["next"]).json()

    assert ids_of(second) == [str(runs[2].id), str(runs[3].id)]


def test_it_refuses_page_numbers_and_foreign_cursors(reader):
    make_run(make_pipeline("etl"))

    by_page = assert_error(reader.get("/api/runs/", {"page": 9}), 400, "invalid")
    forged = assert_error(reader.get("/api/runs/", {"cursor": "not-ours"}), 400, "invalid")

    assert "cursor" in by_page["fields"]["page"]
    assert "next" in forged["fields"]["cursor"]


def test_it_filters_by_pipeline_status_trigger_and_since(reader):
    etl, other = make_pipeline("etl"), make_pipeline("other")
    now = timezone.now()
    failed = make_run(etl, RunStatus.FAILED, triggered_by="webhook", queued_at=now)
    make_run(etl, RunStatus.SUCCESS, queued_at=now)
    make_run(other, RunStatus.FAILED, queued_at=now)
    old = make_run(etl, RunStatus.FAILED, triggered_by="webhook", queued_at=now - timedelta(days=3))

    def ids(**params):
        return {r["id"] for r in reader.get("/api/runs/", params).json()["results"]}

    assert ids(pipeline="etl", status="FAILED") == {str(failed.id), str(old.id)}
    assert ids(triggered_by="webhook") == {str(failed.id), str(old.id)}
    since = (now - timedelta(days=1)).isoformat()
    assert ids(pipeline="etl", status="FAILED", since=since) == {str(failed.id)}


def test_it_matches_the_status_filter_regardless_of_case(reader):
    etl = make_pipeline("etl")
    failed = make_run(etl, RunStatus.FAILED)
    make_run(etl, RunStatus.SUCCESS)

    listed = reader.get("/api/runs/", {"status": "failed"}).json()["results"]

    assert [r["id"] for r in listed] == [str(failed.id)]
    body = assert_error(reader.get("/api/runs/", {"status": "EXPLODED"}), 400, "invalid")
    assert "SUCCESS" in body["fields"]["status"]  # a miss names the valid statuses


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday-ish"}, "since"),
        ({"status": "EXPLODED"}, "status"),
        ({"pipeline": "a\x00b"}, "pipeline"),
    ],
)
def test_it_rejects_bad_filters_with_the_field_named(reader, params, field):
    body = assert_error(reader.get("/api/runs/", params), 400, "invalid")
    assert field in body["fields"]


def test_it_shows_every_documented_field_of_one_run(reader):
    parent = make_run(make_pipeline("etl"), RunStatus.FAILED)
    run = make_run(
        parent.pipeline,
        RunStatus.RUNNING,
        started_at=timezone.now(),
        parameters={"DAY": "monday"},
        env_vars={"DAY": "monday", "API_TOKEN": "***"},
        parent_run=parent,
        retry_attempt=1,
        triggered_by="retry",
    )

    body = reader.get(f"/api/runs/{run.id}/").json()

    assert body["id"] == str(run.id)
    assert body["pipeline"] == "etl"
    assert body["status"] == "RUNNING"
    assert body["parameters"] == {"DAY": "monday"}
    assert body["env_vars"]["API_TOKEN"] == "***"
    assert body["parent_run"] == str(parent.id)
    assert body["retry_attempt"] == 1
    assert body["duration"] is not None
    for name in [
        "queued_at",
        "started_at",
        "finished_at",
        "exit_code",
        "error_message",
        "log_file",
        "metrics_file",
        "uv_version",
        "setup_duration",
        "triggered_by",
        "run_config_id",
        "chain_depth",
        "cancel_requested_at",
        "peak_memory_bytes",
        "container_id",
        "engine_id",
    ]:
        assert name in body


def test_it_answers_404_in_the_error_shape_for_an_unknown_run(reader):
    assert_error(reader.get(f"/api/runs/{uuid.uuid4()}/"), 404, "not_found")
    assert_error(reader.get("/api/runs/not-a-uuid/"), 404, "not_found")


def test_it_cancels_a_pending_run_at_once(writer):
    run = make_run(make_pipeline("etl"))

    response = writer.post(f"/api/runs/{run.id}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLED"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_it_requests_cancellation_of_a_running_run(writer):
    run = make_run(make_pipeline("etl"), RunStatus.RUNNING, started_at=timezone.now())

    response = writer.post(f"/api/runs/{run.id}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "RUNNING"
    assert response.json()["cancel_requested_at"] is not None


def test_it_refuses_to_cancel_a_finished_run_with_409(writer):
    run = make_run(make_pipeline("etl"), RunStatus.SUCCESS, finished_at=timezone.now())

    assert_error(writer.post(f"/api/runs/{run.id}/cancel/"), 409, "conflict")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS


def test_it_retries_a_finished_run_as_a_new_pending_run(writer):
    run = make_run(
        make_pipeline("etl"), RunStatus.FAILED, parameters={"DAY": "monday"}, exit_code=1
    )

    response = writer.post(f"/api/runs/{run.id}/retry/")

    assert response.status_code == 201
    body = response.json()
    assert body["id"] != str(run.id)
    assert body["status"] == "PENDING"
    assert body["parent_run"] == str(run.id)
    assert body["parameters"] == {"DAY": "monday"}
    assert PipelineRun.objects.count() == 2


def test_it_refuses_to_retry_a_run_that_has_not_finished(writer):
    run = make_run(make_pipeline("etl"), RunStatus.RUNNING)

    assert_error(writer.post(f"/api/runs/{run.id}/retry/"), 409, "conflict")
    assert PipelineRun.objects.count() == 1


def test_it_refuses_to_retry_a_run_of_a_disabled_pipeline(writer):
    run = make_run(make_pipeline("etl", enabled=False), RunStatus.FAILED)

    assert_error(writer.post(f"/api/runs/{run.id}/retry/"), 409, "pipeline_not_runnable")


def test_it_tails_the_log_by_byte_offset(reader):
    run = make_run(make_pipeline("etl"), RunStatus.RUNNING)
    path = run_log_path(run)
    path.write_bytes(b"one\ntwo\nthr")

    first = reader.get(f"/api/runs/{run.id}/logs/")
    assert first.status_code == 200
    assert first["Content-Type"].startswith("text/plain")
    assert first.content == b"one\ntwo\n"
    assert first["X-Next-Offset"] == "8"
    assert first["X-Run-Status"] == "RUNNING"

    with path.open("ab") as fh:
        fh.write(b"ee\nfour\n")
    second = reader.get(f"/api/runs/{run.id}/logs/", {"offset": first["X-Next-Offset"]})
    assert second.content == b"three\nfour\n"
    assert second["X-Next-Offset"] == str(path.stat().st_size)

    third = reader.get(f"/api/runs/{run.id}/logs/", {"offset": second["X-Next-Offset"]})
    assert third.content == b""
    assert third["X-Next-Offset"] == second["X-Next-Offset"]


def test_it_serves_logs_to_clients_asking_for_plain_text(reader):
    run = make_run(make_pipeline("etl"), log=b"hello\n")

    response = reader.get(f"/api/runs/{run.id}/logs/", HTTP_ACCEPT="text/plain")

    assert response.status_code == 200
    assert response.content == b"hello\n"


def test_it_returns_an_empty_log_for_a_run_without_a_file(reader):
    run = make_run(make_pipeline("etl"))

    response = reader.get(f"/api/runs/{run.id}/logs/")

    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Next-Offset"] == "0"


def test_it_rejects_a_negative_or_garbage_log_offset(reader):
    run = make_run(make_pipeline("etl"))

    assert (
        "offset" in assert_error(reader.get(f"/api/runs/{run.id}/logs/?offset=-1"), 400)["fields"]
    )
    assert (
        "offset" in assert_error(reader.get(f"/api/runs/{run.id}/logs/?offset=abc"), 400)["fields"]
    )


def test_it_returns_the_metric_samples(reader, settings):
    run = make_run(make_pipeline("etl"))
    path = settings.METRICS_DIR / f"{run.id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"t": 1, "cpu": 0.5}\n{"t": 2, "cpu": 0.7}\n{"t": 3, "cp')
    PipelineRun.objects.filter(id=run.id).update(metrics_file=str(path))

    body = reader.get(f"/api/runs/{run.id}/metrics/").json()

    assert body == {"run_id": str(run.id), "samples": [{"t": 1, "cpu": 0.5}, {"t": 2, "cpu": 0.7}]}
