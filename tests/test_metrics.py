"""`GET /metrics`: every family against a real database with runs in it, and who may read it.

Runs go through the real services (enqueue → claim → finish / fail / cancel), so the counters
and histograms are the ones production writes; the output is parsed with prometheus-client's
own text parser.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts_app.models import Role
from accounts_app.services import token_issue
from pipelines_app.models import Pipeline
from runs_app.engine.base import Outcome
from runs_app.engine.lease import lease_acquire
from runs_app.engine.scheduler import fire_schedule
from runs_app.models import EngineInstance, PipelineRun, RunStat, ScheduledJob
from runs_app.services import run_cancel, run_claim_next, run_enqueue, run_fail, run_finish
from tests.helpers_accounts import bearer, make_user
from tests.helpers_engine import claimed_run, make_pipeline, wait_for
from tests.helpers_gunicorn import free_port, get, gunicorn
from tests.helpers_settings import config_error, run_django

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.FASTFLOW_METRICS_TOKEN = TOKEN


def scrape(client: Client | None = None, **headers: str) -> dict[str, dict]:
    """name → {labels tuple → value} of every sample, from a real /metrics response."""
    client = client or Client()
    response = client.get("/metrics", **(headers or bearer(TOKEN)))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def finished(pipeline: Pipeline, *, exit_code: int, seconds: float, setup: float | None = None):
    run = claimed_run(pipeline)
    # The run "started" `seconds` ago: a known duration to find in the histogram.
    PipelineRun.objects.filter(id=run.id).update(
        started_at=timezone.now() - timedelta(seconds=seconds)
    )
    run.refresh_from_db()
    return run_finish(run=run, outcome=Outcome(exit_code=exit_code, setup_duration=setup))


def test_it_counts_finished_runs_by_pipeline_and_final_status():
    etl = make_pipeline("etl")
    report = make_pipeline("report")
    finished(etl, exit_code=0, seconds=2)
    finished(etl, exit_code=0, seconds=3)
    finished(etl, exit_code=1, seconds=4)
    run_fail(run=claimed_run(report), reason="no runner image")
    run_cancel(run=run_enqueue(pipeline=report, triggered_by="manual"))  # PENDING → CANCELLED
    running = claimed_run(report)
    run_cancel(run=running)  # RUNNING: the engine stops it, the result says CANCELLED
    run_finish(run=running, outcome=Outcome(exit_code=143, cancelled=True))

    samples = scrape()

    assert value(samples, "fastflow_runs_total", pipeline="etl", status="SUCCESS") == 2
    assert value(samples, "fastflow_runs_total", pipeline="etl", status="FAILED") == 1
    assert value(samples, "fastflow_runs_total", pipeline="report", status="FAILED") == 1
    assert value(samples, "fastflow_runs_total", pipeline="report", status="CANCELLED") == 2
    assert value(samples, "fastflow_runs_total", pipeline="report", status="SUCCESS") is None


def test_counters_do_not_go_down_when_runs_are_deleted():
    etl = make_pipeline("etl")
    run = finished(etl, exit_code=0, seconds=1)
    PipelineRun.objects.filter(id=run.id).delete()  # e.g. retention

    assert value(scrape(), "fastflow_runs_total", pipeline="etl", status="SUCCESS") == 1


def test_it_exports_run_and_setup_duration_histograms():
    etl = make_pipeline("etl")
    finished(etl, exit_code=0, seconds=42, setup=0.3)
    finished(etl, exit_code=0, seconds=7, setup=3.0)
    finished(etl, exit_code=1, seconds=0.5)  # failed before its setup note: no setup value

    samples = scrape()
    duration = "fastflow_run_duration_seconds"
    ok = {"pipeline": "etl", "status": "SUCCESS"}

    assert value(samples, f"{duration}_bucket", le="5.0", **ok) == 0
    assert value(samples, f"{duration}_bucket", le="15.0", **ok) == 1
    assert value(samples, f"{duration}_bucket", le="30.0", **ok) == 1
    assert value(samples, f"{duration}_bucket", le="60.0", **ok) == 2
    assert value(samples, f"{duration}_bucket", le="+Inf", **ok) == 2
    assert value(samples, f"{duration}_count", **ok) == 2
    assert value(samples, f"{duration}_sum", **ok) == pytest.approx(49, abs=1)
    failed = {"pipeline": "etl", "status": "FAILED"}
    assert value(samples, f"{duration}_bucket", le="1.0", **failed) == 1

    # Setup time is per pipeline (how the run ended does not change it).
    setup = "fastflow_run_setup_duration_seconds"
    assert value(samples, f"{setup}_bucket", le="0.25", pipeline="etl") == 0
    assert value(samples, f"{setup}_bucket", le="0.5", pipeline="etl") == 1
    assert value(samples, f"{setup}_bucket", le="5.0", pipeline="etl") == 2
    assert value(samples, f"{setup}_count", pipeline="etl") == 2  # the failed run had none
    assert value(samples, f"{setup}_sum", pipeline="etl") == pytest.approx(3.3)


def test_it_exports_the_schedule_lag_from_fire_time_to_start():
    etl = make_pipeline("etl")
    job = ScheduledJob.objects.create(pipeline=etl, trigger_type="INTERVAL", trigger_value="60")
    fired = timezone.now() - timedelta(seconds=8)
    fire_schedule(str(job.id), fire_time=fired.isoformat())  # what APScheduler calls
    run = run_claim_next(engine_id="test-engine")
    assert run is not None and run.triggered_by == "scheduler"
    run_finish(run=run, outcome=Outcome(exit_code=0))
    finished(etl, exit_code=0, seconds=1)  # a manual run has no schedule lag

    samples = scrape()
    lag = "fastflow_schedule_lag_seconds"
    labels = {"pipeline": "etl"}

    assert value(samples, f"{lag}_count", **labels) == 1
    assert value(samples, f"{lag}_bucket", le="5.0", **labels) == 0
    assert value(samples, f"{lag}_bucket", le="10.0", **labels) == 1
    assert value(samples, f"{lag}_sum", **labels) == pytest.approx(8, abs=1.5)


def test_it_exports_queue_depth_running_runs_and_the_oldest_due_run():
    etl = make_pipeline("etl")
    report = make_pipeline("report")
    claimed_run(etl)  # RUNNING
    old = run_enqueue(pipeline=etl, triggered_by="manual")
    run_enqueue(pipeline=report, triggered_by="manual")
    delayed = run_enqueue(pipeline=report, triggered_by="manual")
    PipelineRun.objects.filter(id=old.id).update(queued_at=timezone.now() - timedelta(minutes=2))
    # A retry waiting for its delay is queued but not due: it does not count as waiting.
    PipelineRun.objects.filter(id=delayed.id).update(
        queued_at=timezone.now() - timedelta(hours=1),
        not_before=timezone.now() + timedelta(minutes=5),
    )

    samples = scrape()

    assert value(samples, "fastflow_runs_queued", pipeline="etl") == 1
    assert value(samples, "fastflow_runs_queued", pipeline="report") == 2
    assert value(samples, "fastflow_runs_running", pipeline="etl") == 1
    assert value(samples, "fastflow_runs_running", pipeline="report") is None
    assert value(samples, "fastflow_oldest_queued_run_age_seconds") == pytest.approx(120, abs=5)


def test_the_oldest_due_run_age_is_zero_with_an_empty_queue():
    make_pipeline("etl")

    assert value(scrape(), "fastflow_oldest_queued_run_age_seconds") == 0


def test_it_exports_engine_heartbeat_ages_liveness_and_the_scheduler_leader(settings):
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 30
    now = timezone.now()
    for engine_id, age in (("a:1:x.1", 3), ("b:2:y.2", 90)):
        EngineInstance.objects.create(
            id=engine_id,
            hostname=engine_id[0],
            pid=1,
            executor="docker",
            heartbeat_at=now - timedelta(seconds=age),
        )
    assert lease_acquire(name="scheduler", holder="a:1:x.1")

    samples = scrape()
    age = "fastflow_engine_heartbeat_age_seconds"

    assert value(samples, age, engine="a:1:x.1", hostname="a", executor="docker") == (
        pytest.approx(3, abs=2)
    )
    assert value(samples, age, engine="b:2:y.2", hostname="b", executor="docker") == (
        pytest.approx(90, abs=2)
    )
    assert value(samples, "fastflow_engines_alive") == 1
    assert value(samples, "fastflow_scheduler_leader", engine="a:1:x.1") == 1


def test_it_exports_the_cache_warmup_state_of_pipelines_with_requirements():
    now = timezone.now()
    make_pipeline("warm", requirements="six\n")
    make_pipeline("broken", requirements="six\n")
    make_pipeline("fresh", requirements="six\n")
    make_pipeline("plain")  # no requirements.txt: no warm-up state
    Pipeline.objects.filter(pipeline_name="warm").update(last_cache_warmup=now)
    Pipeline.objects.filter(pipeline_name="broken").update(cache_warmup_error="index down")

    samples = scrape()
    state = "fastflow_cache_warmup_state"

    assert value(samples, state, pipeline="warm", state="warm") == 1
    assert value(samples, state, pipeline="warm", state="failed") == 0
    assert value(samples, state, pipeline="broken", state="failed") == 1
    assert value(samples, state, pipeline="fresh", state="pending") == 1
    assert value(samples, state, pipeline="plain", state="pending") is None
    last = "fastflow_cache_warmup_last_success_timestamp_seconds"
    assert value(samples, last, pipeline="warm") == pytest.approx(now.timestamp(), abs=1)
    assert value(samples, last, pipeline="fresh") is None


def test_it_counts_webhook_responses_by_status_code():
    make_pipeline("hook", pipeline_json={"webhook_key": "k" * 32})
    before = scrape()
    client = Client()
    url = f"/webhooks/hook/{'k' * 32}"
    assert client.post(url, "{}", content_type="application/json").status_code == 202
    assert client.post(url, "{}", content_type="application/json").status_code == 202
    assert client.post(url, "[]", content_type="application/json").status_code == 400
    assert client.post("/webhooks/hook/wrong-key").status_code == 404
    assert client.get(f"/webhooks/hook/{'k' * 32}").status_code == 405

    after = scrape()

    def delta(code: str) -> float:
        name = "fastflow_webhook_responses_total"
        return (value(after, name, code=code) or 0) - (value(before, name, code=code) or 0)

    assert (delta("202"), delta("400"), delta("404"), delta("405")) == (2, 1, 1, 1)


def test_a_scrape_costs_the_same_few_queries_however_many_runs_and_pipelines():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape()
        return len(captured)

    make_pipeline("first", requirements="six\n")
    finished(Pipeline.objects.get(pipeline_name="first"), exit_code=0, seconds=1)
    small = queries()
    for index in range(8):
        pipeline = make_pipeline(f"p{index}", requirements="six\n")
        for code in (0, 1, 0):
            finished(pipeline, exit_code=code, seconds=index + 1, setup=0.2)
    claimed_run(Pipeline.objects.get(pipeline_name="first"))  # one RUNNING
    for pipeline in Pipeline.objects.all():
        run_enqueue(pipeline=pipeline, triggered_by="manual")
    large = queries()

    assert small == large
    assert large <= 6  # run_stats, the queue, engines, the lease, warm-up state (+ savepoints)
    assert RunStat.objects.count() > 40


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token-0123456789"},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": "Bearer"},
    ],
    ids=["anonymous", "wrong-token", "other-scheme", "empty-bearer"],
)
def test_it_refuses_scrapes_without_valid_credentials(headers):
    response = Client().get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.json()["error"] == "not_authenticated"
    assert b"fastflow_runs" not in response.content


def test_without_a_metrics_token_setting_only_users_may_read(settings):
    settings.FASTFLOW_METRICS_TOKEN = ""

    assert Client().get("/metrics", **bearer("")).status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer x").status_code == 401


@pytest.mark.parametrize("role", [Role.READONLY, Role.WRITE, Role.ADMIN])
def test_every_role_may_read_metrics_with_an_api_token_or_a_session(role):
    user = make_user(f"user-{role.lower()}", role=role)
    _, token = token_issue(user=user)

    assert "fastflow_engines_alive" in scrape(**bearer(token))
    browser = Client()
    browser.force_login(user)
    assert "fastflow_engines_alive" in scrape(browser, HTTP_ACCEPT="text/plain")


def test_a_blocked_users_token_and_session_are_refused():
    user = make_user("gone", role=Role.ADMIN)
    _, token = token_issue(user=user)
    browser = Client()
    browser.force_login(user)
    user.blocked = True
    user.save(update_fields=["blocked"])

    assert Client().get("/metrics", **bearer(token)).status_code == 401
    assert browser.get("/metrics").status_code in {302, 401}


def test_a_bearer_scrape_by_ip_or_service_name_skips_the_host_check():
    # Prometheus scrapes `web:8000` or a pod IP, names ALLOWED_HOSTS does not list.
    response = Client().get("/metrics", HTTP_HOST="10.1.2.3:8000", **bearer(TOKEN))

    assert response.status_code == 200
    assert Client().get("/metrics", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_it_speaks_openmetrics_when_asked():
    response = Client().get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0", **bearer(TOKEN)
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_it_answers_503_when_the_database_fails():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE run_stats")  # rolled back with the test's transaction

    response = Client().get("/metrics", **bearer(TOKEN))

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


def test_under_gunicorn_every_workers_webhook_counts_are_added_up(tmp_path):
    """Two worker processes, each answering some webhooks: any scrape reports all of them."""
    port = free_port()
    web, out = gunicorn(tmp_path, port, workers=2, FASTFLOW_METRICS_TOKEN=TOKEN)
    try:
        wait_for(lambda: get(port, "/healthz"), timeout=60, what="gunicorn to answer")
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers
            assert (
                requests.post(f"http://127.0.0.1:{port}/webhooks/x/y", timeout=5).status_code == 404
            )
        counts = set()
        for _ in range(6):
            (response,) = get(port, "/metrics", Authorization=f"Bearer {TOKEN}")
            assert response.status_code == 200, response.text
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    if sample.name == "fastflow_webhook_responses_total":
                        counts.add(sample.value)
    finally:
        web.terminate()
        web.wait(30)

    assert counts == {12.0}, out.read_text()


def test_a_short_metrics_token_is_refused_naming_the_variable(tmp_path):
    result = run_django(tmp_path, FASTFLOW_METRICS_TOKEN="short")

    assert result.returncode != 0
    assert config_error(result).startswith("FASTFLOW_METRICS_TOKEN: use at least 16 characters")
