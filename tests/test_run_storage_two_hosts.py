"""A web process and an engine that share no disk (FASTFLOW_RUN_STORAGE=s3): the engine is a
real `runscheduler` subprocess with its own data dir, this test process is the web side with
another, both on the test database, the object store a real S3 server on 127.0.0.1 (moto).
The live log and metrics reach the API and the admin through the database while the run runs;
at the end they are archived to the bucket and read from there."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import docker
import pytest
from django.db import connection
from django.urls import reverse

from accounts_app.roles import Role
from runs_app import sse
from runs_app.logs import NOTE, STDERR, STDOUT, log_lines_parse
from runs_app.models import PipelineRun, RunOutputChunk, RunStatus
from runs_app.run_output import LOG, output_bytes
from runs_app.services import run_enqueue
from secrets_app.services import secret_set
from tests import helpers_admin, helpers_api
from tests.helpers_engine import EngineProcess, make_pipeline, run_refreshed, wait_for
from tests.test_api_logs_stream import parse_events

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3-live-secret-value"


def live_log(run: PipelineRun) -> bytes:
    """The log as the web side reads it now (chunks while live, the object once archived)."""
    return output_bytes(run=run_refreshed(run), stream=LOG, offset=0) or b""


def pipeline_texts(data: bytes) -> list[str]:
    return [line.text for line in log_lines_parse(data) if not line.is_note]


def stream_texts(data: bytes, source: str) -> list[str]:
    return [line.text for line in log_lines_parse(data) if line.source == source]


def archived(run: PipelineRun) -> bool:
    return run_refreshed(run).output_archived_at is not None


@pytest.fixture
def bounded_stream(monkeypatch):
    monkeypatch.setattr(sse, "MAX_STREAM_SECONDS", 120.0)
    monkeypatch.setattr(sse, "STATUS_POLL_SECONDS", 0.2)
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.05)


def engine_on_another_host(tmp_path: Path, name: str, **env: str) -> tuple[EngineProcess, Path]:
    folder = tmp_path / f"{name}-host-data"
    return EngineProcess(name, FASTFLOW_DATA_DIR=str(folder), **env), folder


def stream_in_thread(run: PipelineRun, found: dict) -> threading.Thread:
    """Follow the SSE stream from offset 0 in a thread, like a browser left open on the run."""
    client = helpers_api.client_for(Role.READONLY)

    def follow() -> None:
        try:
            response = client.get(reverse("api-run-logs-stream", args=[run.id]))
            found["events"] = parse_events(b"".join(response.streaming_content))
        finally:
            connection.close()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def test_a_live_run_on_another_host_is_shown_then_archived(
    object_store, tmp_path, settings, bounded_stream
):
    release = tmp_path / "release"
    secret_set(key="API_TOKEN", value=SECRET)
    pipeline = make_pipeline(
        "remote",
        "import os, sys, time\n"
        "print('token', os.environ['API_TOKEN'], flush=True)\n"
        "for i in range(1, 4):\n    print('tick', i, flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n"
        "print('done', flush=True)\n",
        pipeline_json={"secrets": ["API_TOKEN"]},
    )
    engine, engine_data = engine_on_another_host(
        tmp_path, "remote", FASTFLOW_METRICS_INTERVAL_SECONDS="0.2"
    )
    api = helpers_api.client_for(Role.READONLY)
    admin = helpers_admin.client_for(Role.READONLY)
    with engine:
        engine.wait_registered()
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        found: dict = {}
        streaming = stream_in_thread(run, found)

        # Live: through the database, masked, before the run has ended.
        wait_for(lambda: b"to stderr" in live_log(run), timeout=60, what="the live log")
        logs_url = reverse("api-run-logs", args=[run.id])
        response = api.get(logs_url)
        assert response["X-Run-Status"] == RunStatus.RUNNING
        # Each stream in order (the two pipes are read apart, so not with each other).
        assert stream_texts(response.content, STDOUT) == ["token ***", "tick 1", "tick 2", "tick 3"]
        assert stream_texts(response.content, STDERR) == ["to stderr"]
        assert SECRET.encode() not in response.content
        samples = wait_for(
            lambda: api.get(reverse("api-run-metrics", args=[run.id])).json()["samples"],
            timeout=30,
            what="live metrics",
        )
        assert {"ts", "cpu_percent", "memory_bytes"} <= set(samples[0])
        page = admin.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
        assert b"tick 3" in page.content and b"No metrics recorded" not in page.content
        tail = admin.get(reverse("admin:runs_app_pipelinerun_log", args=[run.pk])).json()
        texts = [line["text"] for line in tail["lines"] if line["source"] == "stdout"]
        assert texts[:2] == ["token ***", "tick 1"]
        assert tail["terminal"] is False and tail["log_missing"] is False
        # Nothing of the run is on the web side's disk; the engine writes its own copy.
        assert not (Path(settings.DATA_DIR) / "logs").exists()
        assert (engine_data / run.log_file).is_file()
        assert object_store.names() == []

        release.touch()
        wait_for(lambda: archived(run), timeout=60, what="the run's output to be archived")
        streaming.join(60)

    assert run.status == RunStatus.SUCCESS, run.error_message
    # Archived: one object per stream, no chunks, the engine's copy gone.
    assert object_store.names() == sorted([run.log_file, run.metrics_file])
    assert not RunOutputChunk.objects.filter(run=run).exists()
    assert not (engine_data / run.log_file).exists()
    log = object_store.read(run.log_file)
    assert stream_texts(log, STDOUT) == ["token ***", "tick 1", "tick 2", "tick 3", "done"]
    assert stream_texts(log, STDERR) == ["to stderr"]
    assert any(line.source == NOTE for line in log_lines_parse(log))  # the engine's notes too
    assert json.loads(object_store.read(run.metrics_file).splitlines()[0])["memory_bytes"] > 0

    # The stream that began on the live chunks ended on the archive, offsets continuous.
    events = found["events"]
    assert events[-1]["event"] == "end"
    assert json.loads(events[-1]["data"]) == {"status": "SUCCESS", "offset": len(log)}
    lines = [event for event in events if "event" not in event]
    assert "\n".join(event["data"] for event in lines) + "\n" == log.decode()
    assert int(lines[-1]["id"]) == len(log)

    # From the archive: the API by offset, SSE resuming after the first line, the download.
    first = len(log.splitlines(keepends=True)[0])
    response = api.get(logs_url, {"offset": first})
    assert response.content == log[first:] and response["X-Next-Offset"] == str(len(log))
    resumed = api.get(reverse("api-run-logs-stream", args=[run.id]), HTTP_LAST_EVENT_ID=str(first))
    events = parse_events(b"".join(resumed.streaming_content))
    assert [e["data"] for e in events if "event" not in e] == log[first:].decode().splitlines()
    download = admin.get(reverse("admin:runs_app_pipelinerun_log_download", args=[run.pk]))
    assert b"".join(download.streaming_content) == log
    page = admin.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
    assert b"done" in page.content and b"Metrics file missing" not in page.content


def test_the_log_cap_holds_on_the_way_to_the_archive(object_store, tmp_path):
    pipeline = make_pipeline(
        "chatty", "for i in range(500):\n    print('line', i, 'x' * 40, flush=True)\n"
    )
    engine, _ = engine_on_another_host(tmp_path, "capped", FASTFLOW_LOG_MAX_BYTES="4096")
    with engine:
        engine.wait_registered()
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: archived(run), timeout=60, what="the run's output to be archived")

    log = object_store.read(run.log_file)
    notes = [line.text for line in log_lines_parse(log) if line.is_note]
    assert any(note.startswith("log truncated at 4096 bytes") for note in notes)
    assert len(log) < 4096 + 1024  # the cap, plus the engine's few notes
    assert pipeline_texts(log)[0] == "line 0 " + "x" * 40


@pytest.mark.docker
def test_a_new_engine_on_an_empty_disk_resumes_the_log_from_the_database(
    object_store, tmp_path, docker_env
):
    pipeline = make_pipeline(
        "resumed",
        "import time\nfor i in range(1, 11):\n    print('line', i, flush=True)\n"
        "    time.sleep(0.4)\n",
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    first, _ = engine_on_another_host(tmp_path, "first", executor="docker", **docker_env)
    first.start()
    try:
        first.wait_registered()
        wait_for(lambda: b"line 3" in live_log(run), timeout=120, what="line 3 in the database")
    finally:
        first.kill()  # kill -9: its copy of the log dies with its host
    assert run_refreshed(run).status == RunStatus.RUNNING

    second, second_data = engine_on_another_host(
        tmp_path, "second", executor="docker", **docker_env
    )
    with second:
        second.wait_registered()
        wait_for(lambda: archived(run), timeout=120, what="the run's output to be archived")

    assert run.status == RunStatus.SUCCESS, run.error_message
    log = object_store.read(run.log_file)
    assert pipeline_texts(log) == [f"line {i}" for i in range(1, 11)]  # none lost, none twice
    assert not (second_data / run.log_file).exists()
    assert not docker.from_env().containers.list(
        all=True, filters={"label": f"fastflow.run_id={run.id}"}, ignore_removed=True
    )
