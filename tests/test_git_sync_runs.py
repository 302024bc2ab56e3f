"""Runs and git sync, through the real engine: a run records and runs the commit it was claimed
with, keeps reading it while a sync switches, and only the leader engine syncs."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from gitsync_app.models import GitRepository
from gitsync_app.services import repository_request_sync
from pipelines_app import checkouts
from pipelines_app.models import Pipeline
from runs_app.engine.lease import SCHEDULER_LEASE
from runs_app.logs import STDOUT, log_lines_parse
from runs_app.models import RunStatus
from runs_app.services import run_enqueue
from tests.helpers_engine import (
    EngineProcess,
    ThreadEngine,
    lease_holder,
    log_text,
    wait_for,
    wait_until_finished,
)
from tests.helpers_git import Origin, configure, sync_now
from tests.test_git_sync_webhook import github_headers

pytestmark = pytest.mark.django_db(transaction=True)

# Reads one file, waits for the test's go-ahead, reads the other: a sync in between must not
# change what the second read sees.
TWO_READS = """\
import os, pathlib, time
print('commit', os.environ.get('FASTFLOW_GIT_COMMIT'), flush=True)
print('first', open('a.txt').read(), flush=True)
go = pathlib.Path(os.environ['GO_FILE'])
deadline = time.time() + 60
while not go.exists() and time.time() < deadline:
    time.sleep(0.05)
print('second', open('b.txt').read(), flush=True)
"""


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "origin")


def test_a_run_records_the_commit_it_ran_and_keeps_reading_it_while_a_sync_switches(
    origin, tmp_path
):
    go = tmp_path / "go"
    first = origin.commit(
        {
            "reader/main.py": TWO_READS,
            "reader/a.txt": "v1",
            "reader/b.txt": "v1",
            "reader/pipeline.json": f'{{"default_env": {{"GO_FILE": "{go}"}}}}',
        }
    )
    configure(origin.url)
    sync_now()
    run = run_enqueue(pipeline="reader", triggered_by="manual")

    with ThreadEngine():
        wait_for(lambda: "first v1" in log_text(run), what="the run's first read")
        second = origin.commit({"reader/a.txt": "v2", "reader/b.txt": "v2"})
        assert sync_now().changed
        assert (Path(settings.PIPELINES_DIR) / "reader" / "b.txt").read_text() == "v2"
        go.touch()
        wait_until_finished(run)
        later = run_enqueue(pipeline="reader", triggered_by="manual")
        wait_until_finished(later)

    assert run.status == RunStatus.SUCCESS, log_text(run)
    assert run.git_commit == first
    assert f"commit {first}" in log_text(run)
    assert "second v1" in log_text(run)  # its own checkout, not the one switched to
    assert later.git_commit == second and "second v2" in log_text(later)


@pytest.mark.docker
def test_a_docker_run_mounts_its_own_checkout_not_the_symlink(
    origin, docker_engine, settings, tmp_path
):
    from tests.helpers_executor import use_runner_image

    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    # No go-ahead file can reach a locked-down container: it waits long enough for the sync,
    # and the test checks that the sync did finish before the second read.
    slow = (
        "import time, datetime\n"
        "print('first', open('a.txt').read(), flush=True)\n"
        "time.sleep(8)\n"
        "print('second', open('b.txt').read(), flush=True)\n"
    )
    first = origin.commit({"boxed/main.py": slow, "boxed/a.txt": "v1", "boxed/b.txt": "v1"})
    configure(origin.url)
    sync_now()
    run = run_enqueue(pipeline="boxed", triggered_by="manual")

    with ThreadEngine(executor="docker"):
        wait_for(lambda: "first v1" in log_text(run), timeout=120, what="the first read")
        origin.commit({"boxed/a.txt": "v2", "boxed/b.txt": "v2"})
        assert sync_now().changed
        switched_at = datetime.now().astimezone()
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS, log_text(run)
    assert run.git_commit == first
    lines = log_lines_parse(log_text(run).encode())
    second = next(line for line in lines if line.source == STDOUT and "second" in line.text)
    assert second.text == "second v1"
    assert second.at is not None
    assert switched_at < second.at, "the sync did not finish before the run's second read"


def test_the_commit_is_shown_in_the_api_and_the_admin(origin):
    from tests.helpers_admin import client_for

    sha = origin.commit({"hello/main.py": "print('hi')\n"})
    configure(origin.url)
    sync_now()
    run = run_enqueue(pipeline="hello", triggered_by="manual")
    with ThreadEngine():
        wait_until_finished(run)

    reader = client_for("READONLY")  # the API accepts the admin's session too
    api = reader.get(f"/api/runs/{run.id}/").json()
    assert api["git_commit"] == sha
    detail = reader.get(f"/admin/runs_app/pipelinerun/{run.id}/change/")
    assert sha in detail.content.decode()
    listing = reader.get("/admin/runs_app/pipelinerun/")
    assert sha[:12] in listing.content.decode()


def test_a_push_webhook_makes_the_leader_engine_sync_and_discover(origin, settings):
    origin.commit({"hello/main.py": "print('hi')\n"})
    configure(origin.url, webhook_secret="hook-secret")
    sync_now()
    second = origin.commit({"report/main.py": "print('report')\n"})
    body = b'{"ref": "refs/heads/main", "after": "%s"}' % second.encode()

    with ThreadEngine(schedules=True):
        response = Client().post(
            "/webhooks/git",
            data=body,
            content_type="application/json",
            headers=github_headers(body, "hook-secret"),
        )
        assert response.status_code == 202
        wait_for(
            lambda: GitRepository.objects.get().commit == second,
            timeout=30,
            what="the leader to sync",
        )
        wait_for(lambda: Pipeline.objects.filter(pipeline_name="report").exists(), timeout=10)

    state = GitRepository.objects.get()
    assert state.sync_requested_at is None and state.last_error == ""
    assert Pipeline.objects.get(pipeline_name="report").git_commit == second


SYNC_STARTED = re.compile(r"git sync of \S+ \(branch main\) started by (\S+)$", re.M)


def test_only_the_leader_engine_syncs_on_the_auto_sync_interval(origin):
    first = origin.commit({"hello/main.py": "print('hi')\n"})
    configure(origin.url, auto_sync_interval=10)
    engines = EngineProcess("one"), EngineProcess("two")
    with engines[0], engines[1]:
        ids = [engine.wait_registered() for engine in engines]
        leader_id = wait_for(lambda: lease_holder(name=SCHEDULER_LEASE), what="a leader")
        wait_for(lambda: GitRepository.objects.get().commit == first, timeout=60)
        second = origin.commit({"hello/main.py": "print('hi again')\n"})
        # No request: the interval alone brings the new commit.
        wait_for(lambda: GitRepository.objects.get().commit == second, timeout=60)
        outputs = {engine_id: e.read_output() for engine_id, e in zip(ids, engines, strict=True)}

    follower_id = next(engine_id for engine_id in ids if engine_id != leader_id)
    assert SYNC_STARTED.findall(outputs[follower_id]) == []
    leader_syncs = SYNC_STARTED.findall(outputs[leader_id])
    assert len(leader_syncs) >= 2 and set(leader_syncs) == {leader_id}
    assert Path(settings.PIPELINES_DIR).resolve() == checkouts.checkout_path(second).resolve()


def test_a_requested_sync_waits_for_an_engine_and_is_served_once(origin):
    sha = origin.commit({"hello/main.py": "print('hi')\n"})
    configure(origin.url)  # a new configuration requests a sync
    repository_request_sync(requested_by="test")
    assert GitRepository.objects.get().sync_requested_at is not None

    with ThreadEngine(schedules=True):
        wait_for(lambda: GitRepository.objects.get().commit == sha, timeout=30)
        wait_for(lambda: GitRepository.objects.get().sync_requested_at is None, timeout=10)

    assert GitRepository.objects.get().sync_requested_by == ""
