"""FASTFLOW_LOG_FORMAT=json: one JSON object per line from the web process and the engine,
with request id, engine id, run id and pipeline where they apply; text stays the default."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from django.test import Client

from fastflow_site.logformat import JsonFormatter, log_context, log_process_fields
from runs_app.models import PipelineRun
from runs_app.services import run_enqueue
from tests.helpers_engine import EngineProcess, make_pipeline, wait_for, wait_until_finished
from tests.helpers_gunicorn import free_port, get, gunicorn
from tests.helpers_settings import run_django


def json_lines(text: str) -> list[dict]:
    """Every non-empty line parsed as JSON (a line that is not JSON fails the test)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no output at all"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{text}")
    return parsed


def record(message: str, *, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("runs_app.engine", logging.WARNING, __file__, 1, message, (), exc_info)


def test_the_formatter_writes_one_json_object_with_context_and_exception():
    log_process_fields(engine_id="host:1:ns.ab")
    with log_context(run_id="r-1", pipeline="etl"):
        line = JsonFormatter().format(record("run r-1 failed", exc=True))
    outside = json.loads(JsonFormatter().format(record("idle")))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "WARNING" and entry["logger"] == "runs_app.engine"
    assert entry["message"] == "run r-1 failed"
    assert (entry["engine_id"], entry["run_id"], entry["pipeline"]) == (
        "host:1:ns.ab",
        "r-1",
        "etl",
    )
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")
    assert "run_id" not in outside and outside["engine_id"] == "host:1:ns.ab"


@pytest.mark.django_db
def test_every_response_carries_a_request_id_and_a_sane_given_one_is_kept():
    client = Client()
    given = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.42")
    fresh = client.get("/healthz")
    junk = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\r\nX-Evil: 1")

    assert given["X-Request-ID"] == "lb-7f3a.42"
    assert len(fresh["X-Request-ID"]) == 32
    assert (
        junk["X-Request-ID"] not in {"", "bad id\r\nX-Evil: 1"} and " " not in junk["X-Request-ID"]
    )


def test_the_web_process_logs_json_lines_with_the_request_id(tmp_path):
    port = free_port()
    web, out = gunicorn(tmp_path, port, FASTFLOW_LOG_FORMAT="json")
    try:
        (response,) = wait_for(
            lambda: get(port, "/api/v1/no-such-thing", **{"X-Request-ID": "trace-1234"}),
            timeout=60,
            what="gunicorn to answer",
        )
        get(port, "/login-link/SECRET-LINK-TOKEN-1234")
        wait_for(lambda: "login-link" in out.read_text(), timeout=10, what="the access log")
    finally:
        web.terminate()
        web.wait(30)

    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "trace-1234"
    text = out.read_text()
    entries = json_lines(text)
    tagged = [e for e in entries if e.get("request_id") == "trace-1234"]
    assert {e["logger"] for e in tagged} == {"django.request", "gunicorn.access"}, entries
    access = next(e for e in tagged if e["logger"] == "gunicorn.access")
    assert (access["method"], access["path"], access["status"]) == (
        "GET",
        "/api/v1/no-such-thing",
        404,
    )
    assert any(e["logger"] == "gunicorn.error" for e in entries)  # gunicorn's own lines too
    assert "SECRET-LINK-TOKEN-1234" not in text
    assert "/login-link/[redacted]" in text


def test_gunicorn_keeps_plain_lines_by_default_and_redacts_link_tokens(tmp_path):
    port = free_port()
    web, out = gunicorn(tmp_path, port)
    try:
        wait_for(lambda: get(port, "/login-link/SECRET-LINK-TOKEN-1234"), timeout=60)
        wait_for(lambda: "login-link" in out.read_text(), timeout=10, what="the access log")
    finally:
        web.terminate()
        web.wait(30)

    text = out.read_text()
    assert not text.lstrip().startswith("{")
    assert '"GET /login-link/[redacted] HTTP/1.1"' in text
    assert "SECRET-LINK-TOKEN-1234" not in text


def test_the_default_stays_human_readable(tmp_path):
    result = run_django(
        tmp_path, "import logging; logging.getLogger('runs_app').warning('plain %s', 'words')"
    )

    assert result.returncode == 0, result.stderr
    assert " WARNING runs_app: plain words" in result.stderr
    assert not result.stderr.lstrip().startswith("{")


def test_a_bad_log_format_names_the_variable(tmp_path):
    result = run_django(tmp_path, FASTFLOW_LOG_FORMAT="yaml")

    assert result.returncode != 0
    assert "FASTFLOW_LOG_FORMAT: must be one of text, json" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_engine_logs_json_lines_with_engine_id_run_id_and_pipeline():
    # A run that cannot start (its secret does not exist) is logged by the worker driving it.
    pipeline = make_pipeline("needs_secret", pipeline_json={"secrets": ["NOPE_TOKEN"]})
    with EngineProcess("json", FASTFLOW_LOG_FORMAT="json") as engine:
        engine_id = engine.wait_registered()
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_until_finished(run)
        wait_for(lambda: str(run.id) in engine.read_output(), timeout=10, what="the log line")
        assert engine.terminate(timeout=30) == 0

    entries = json_lines(engine.read_output())
    assert all(e.get("engine_id") == engine_id for e in entries), entries
    about_run = [e for e in entries if e.get("run_id") == str(run.id)]
    assert about_run and all(e["pipeline"] == "needs_secret" for e in about_run)
    assert any("could not start" in e["message"] for e in about_run)
    assert any(e["message"].startswith("runscheduler ") for e in entries)  # no plain lines
    assert PipelineRun.objects.get(id=run.id).status == "FAILED"
