from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from runs_app import sse
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_api import assert_error, client_for, make_pipeline, make_run, run_log_path


def parse_events(raw: bytes) -> list[dict]:
    """SSE frames → [{"event": ..., "id": ..., "data": ...}]; comments are dropped."""
    events = []
    for frame in raw.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in frame.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            events.append(fields)
    return events


def consume(response) -> bytes:
    return b"".join(chunk for chunk in response.streaming_content)


@pytest.fixture
def bounded_stream(monkeypatch):
    # A broken stream must fail the test, not hang it.
    monkeypatch.setattr(sse, "MAX_STREAM_SECONDS", 20.0)
    monkeypatch.setattr(sse, "STATUS_POLL_SECONDS", 0.2)
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.05)


@pytest.mark.django_db(transaction=True)
def test_it_streams_a_live_run_until_it_finishes(bounded_stream):
    run = make_run(make_pipeline("etl"), RunStatus.RUNNING, started_at=timezone.now())
    path = run_log_path(run)
    path.write_bytes(b"first\n")

    def engine() -> None:
        try:
            time.sleep(0.4)
            with path.open("ab") as fh:
                fh.write(b"second\n")
            time.sleep(0.4)
            with path.open("ab") as fh:
                fh.write(b"third\r\nno newline at the end")
            time.sleep(0.2)
            PipelineRun.objects.filter(id=run.id, status=RunStatus.RUNNING).update(
                status=RunStatus.SUCCESS, finished_at=timezone.now(), exit_code=0
            )
        finally:
            connection.close()

    response = client_for("READONLY").get(f"/api/runs/{run.id}/logs/stream/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"

    writer = threading.Thread(target=engine)
    writer.start()
    events = parse_events(consume(response))
    writer.join()

    lines = [e["data"] for e in events if "event" not in e]
    # "second" and "third" were written after the stream started: it followed the live file.
    assert lines == ["first", "second", "third", "no newline at the end"]
    offsets = [int(e["id"]) for e in events if "event" not in e]
    assert offsets == [6, 13, 20, path.stat().st_size]
    assert events[-1]["event"] == "end"
    assert json.loads(events[-1]["data"]) == {"status": "SUCCESS", "offset": path.stat().st_size}


@pytest.mark.django_db
def test_it_replays_a_finished_run_and_ends(bounded_stream):
    run = make_run(make_pipeline("etl"), RunStatus.FAILED, log=b"a\nb\n")

    events = parse_events(consume(client_for("READONLY").get(f"/api/runs/{run.id}/logs/stream/")))

    assert [e["data"] for e in events[:-1]] == ["a", "b"]
    assert events[-1]["event"] == "end"
    assert json.loads(events[-1]["data"])["status"] == "FAILED"


@pytest.mark.django_db
def test_it_resumes_after_last_event_id(bounded_stream):
    run = make_run(make_pipeline("etl"), RunStatus.SUCCESS, log=b"a\nb\nc\n")
    client = client_for("READONLY")

    resumed = parse_events(
        consume(client.get(f"/api/runs/{run.id}/logs/stream/", HTTP_LAST_EVENT_ID="2"))
    )
    from_offset = parse_events(consume(client.get(f"/api/runs/{run.id}/logs/stream/?offset=4")))

    assert [e["data"] for e in resumed[:-1]] == ["b", "c"]
    assert [e["data"] for e in from_offset[:-1]] == ["c"]


@pytest.mark.django_db
def test_it_ends_at_once_for_a_finished_run_without_a_log():
    run = make_run(make_pipeline("etl"), RunStatus.CANCELLED)

    events = parse_events(consume(client_for("READONLY").get(f"/api/runs/{run.id}/logs/stream/")))

    assert events == [{"event": "end", "data": json.dumps({"status": "CANCELLED", "offset": 0})}]


@pytest.mark.django_db
def test_it_answers_errors_as_json_before_streaming():
    client = client_for("READONLY")
    run = make_run(make_pipeline("etl"))

    assert_error(client.get(f"/api/runs/{uuid.uuid4()}/logs/stream/"), 404, "not_found")
    assert_error(
        client.get(f"/api/runs/{run.id}/logs/stream/", HTTP_LAST_EVENT_ID="x"), 400, "invalid"
    )
    assert_error(
        client_for(None).get(f"/api/runs/{run.id}/logs/stream/", HTTP_ACCEPT="text/event-stream"),
        401,
        "not_authenticated",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoke", ["delete the token", "block the user"])
def test_it_ends_a_live_stream_when_access_is_revoked(bounded_stream, revoke):
    from accounts_app.models import ApiToken, User

    run = make_run(make_pipeline("etl"), RunStatus.RUNNING, started_at=timezone.now())
    run_log_path(run).write_bytes(b"first\n")
    client = client_for("READONLY")
    response = client.get(f"/api/runs/{run.id}/logs/stream/")
    assert response.status_code == 200
    stream = iter(response.streaming_content)
    received = next(stream) + next(stream)  # the opening comment, then the first line
    assert b"first" in received

    if revoke == "delete the token":
        ApiToken.objects.all().delete()
    else:
        User.objects.update(blocked=True)
    events = parse_events(b"".join(stream))  # ends by itself; the run is still RUNNING

    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"]) == {"detail": "access revoked"}
    assert PipelineRun.objects.get(id=run.id).status == RunStatus.RUNNING
