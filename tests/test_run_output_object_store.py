"""Run output with FASTFLOW_RUN_STORAGE=s3, in one process: live chunks in the database, the
archive in a real S3-compatible server (moto on 127.0.0.1), every reader and deleter alike."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts_app.roles import Role
from runs_app.engine.output_shipper import OutputArchiveChore, OutputShipper, output_prepare
from runs_app.logs import NOTE, STDOUT, log_line, log_lines_parse
from runs_app.models import PipelineRun, RunOutputChunk, RunStatus
from runs_app.output_chunks import CHUNK_MAX_BYTES, chunks_append, chunks_read
from runs_app.run_output import (
    LOG,
    METRICS,
    log_append_notes,
    log_missing,
    log_read,
    metrics_read,
    output_archive,
    output_local_path,
    output_names,
)
from runs_app.services import run_delete, run_fail
from tests import helpers_admin, helpers_api
from tests.helpers_gunicorn import free_port

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def lines(*texts: str) -> bytes:
    return b"".join(log_line(STDOUT, AT, text) for text in texts)


def live_run(name: str = "etl", **fields) -> PipelineRun:
    pipeline = helpers_admin.make_pipeline(name)
    run = PipelineRun.objects.create(
        pipeline=pipeline, status=RunStatus.RUNNING, started_at=timezone.now(), **fields
    )
    run.log_file, run.metrics_file = output_names(run)
    run.save(update_fields=["log_file", "metrics_file"])
    return run


def finish(run: PipelineRun) -> PipelineRun:
    PipelineRun.objects.filter(id=run.id).update(
        status=RunStatus.SUCCESS, finished_at=timezone.now(), exit_code=0
    )
    run.refresh_from_db()
    return run


def test_an_object_store_run_records_names_relative_to_the_data_dir(object_store, settings):
    run = live_run()
    assert run.log_file == f"logs/etl/{run.id.hex[:2]}/{run.id}.log"
    assert run.metrics_file == f"metrics/etl/{run.id.hex[:2]}/{run.id}.jsonl"
    assert output_local_path(run.log_file) == settings.DATA_DIR / run.log_file


def test_a_local_run_keeps_todays_absolute_paths(settings):
    pipeline = helpers_admin.make_pipeline("etl")
    run = PipelineRun.objects.create(pipeline=pipeline)
    log_file, metrics_file = output_names(run)
    assert log_file == str(settings.LOGS_DIR / "etl" / run.id.hex[:2] / f"{run.id}.log")
    assert metrics_file == str(settings.METRICS_DIR / "etl" / run.id.hex[:2] / f"{run.id}.jsonl")


def test_live_chunks_are_read_by_offset_in_whole_lines(object_store):
    run = live_run()
    first, second = lines("one", "two"), lines("three")
    assert chunks_append(run_id=run.id, stream=LOG, offset=0, data=first)
    assert chunks_append(run_id=run.id, stream=LOG, offset=len(first), data=second)

    data, offset = log_read(run=run)
    assert data == first + second and offset == len(first + second)
    # From the middle of the first chunk, and a limit that cuts the last line: whole lines only.
    start = len(log_line(STDOUT, AT, "one"))
    data, offset = log_read(run=run, offset=start, limit=len(first) - start + 5)
    assert data == lines("two") and offset == len(first)
    assert log_read(run=run, offset=offset + len(second)) == (b"", offset + len(second))
    assert object_store.names() == []


def test_a_second_writer_of_the_same_offsets_is_refused(object_store):
    run = live_run()
    assert chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("mine"))
    assert not chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("theirs"))
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == lines("mine")


def test_a_large_copy_is_split_at_line_ends(object_store):
    run = live_run()
    data = lines(*(f"{i:06d} " + "x" * 1000 for i in range(600)))  # ~600 KiB
    assert chunks_append(run_id=run.id, stream=LOG, offset=0, data=data)
    pieces = list(
        RunOutputChunk.objects.filter(run=run).order_by("offset").values_list("offset", "data")
    )
    assert len(pieces) == 3
    assert all(len(bytes(piece)) <= CHUNK_MAX_BYTES for _, piece in pieces)
    assert all(bytes(piece).endswith(b"\n") for _, piece in pieces)
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == data


def test_archiving_moves_the_chunks_to_one_object_per_stream(object_store):
    run = live_run()
    log = lines("one", "two")
    metrics = b'{"ts": "2026-12-01T12:00:00.000Z", "cpu_percent": 5.0, "memory_bytes": 1024}\n'
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=log)
    chunks_append(run_id=run.id, stream=METRICS, offset=0, data=metrics)

    assert not output_archive(run=run)  # a live run stays in the database
    finish(run)
    assert output_archive(run=run)

    assert object_store.names() == sorted([run.log_file, run.metrics_file])
    assert object_store.read(run.log_file) == log
    assert object_store.read(run.metrics_file) == metrics
    assert not RunOutputChunk.objects.filter(run=run).exists()
    assert run.output_archived_at is not None
    # Readers now read the object, at the same offsets.
    assert log_read(run=run) == (log, len(log))
    assert log_read(run=run, offset=len(lines("one"))) == (lines("two"), len(log))
    assert metrics_read(run=run) == [
        {"ts": "2026-12-01T12:00:00.000Z", "cpu_percent": 5.0, "memory_bytes": 1024}
    ]
    assert not output_archive(run=run)  # once


def test_a_reader_holding_a_stale_row_finds_the_archive(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("done"))
    finish(run)
    stale = PipelineRun.objects.get(id=run.id)  # loaded before archiving
    output_archive(run=run)
    assert stale.output_archived_at is None
    assert log_read(run=stale) == (lines("done"), len(lines("done")))


def test_notes_after_the_end_go_into_the_chunks_or_the_archive(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("ran"))
    run_fail(run=run, reason="the engine stopped")  # finished, not yet archived: a chunk
    output_archive(run=run)

    log_append_notes(run=run, notes=["retry queued"])  # archived: the object is rewritten
    texts = [(line.source, line.text) for line in log_lines_parse(object_store.read(run.log_file))]
    assert texts == [
        (STDOUT, "ran"),
        (NOTE, "run failed: the engine stopped"),
        (NOTE, "retry queued"),
    ]


def test_the_api_and_the_admin_read_live_then_archived_output(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("hello"))
    api = helpers_api.client_for(Role.READONLY)
    admin = helpers_admin.client_for(Role.READONLY)
    url = reverse("api-run-logs", args=[run.id])

    live = api.get(url)
    assert live.status_code == 200 and live.content == lines("hello")
    page = admin.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
    assert page.status_code == 200 and b"hello" in page.content

    finish(run)
    output_archive(run=run)
    archived = api.get(url, {"offset": 0})
    assert archived.content == lines("hello")
    assert archived["X-Next-Offset"] == str(len(lines("hello")))
    download = admin.get(reverse("admin:runs_app_pipelinerun_log_download", args=[run.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == lines("hello")


def test_a_deleted_object_reads_as_missing_not_as_an_empty_log(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("hello"))
    finish(run)
    output_archive(run=run)
    object_store.delete(run.log_file)

    assert log_missing(run=run)
    response = helpers_api.client_for(Role.READONLY).get(reverse("api-run-logs", args=[run.id]))
    helpers_api.assert_error(response, 404, "log_missing")
    tail = helpers_admin.client_for(Role.READONLY).get(
        reverse("admin:runs_app_pipelinerun_log", args=[run.pk])
    )
    assert tail.json()["log_missing"] is True


def test_deleting_a_run_and_cleanupruns_delete_its_objects_and_chunks(object_store):
    first = live_run("kept_short")
    runs = [first, live_run_of(first), live_run_of(first)]
    for run in runs:
        chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("x"))
        chunks_append(run_id=run.id, stream=METRICS, offset=0, data=b"{}\n")
        finish(run)
    output_archive(run=runs[0])
    output_archive(run=runs[2])  # runs[1] is finished, its output still in chunks
    assert len(object_store.names()) == 4

    run_delete(run=runs[0])
    assert object_store.names() == sorted([runs[2].log_file, runs[2].metrics_file])

    pipeline = first.pipeline
    pipeline.metadata = {**pipeline.metadata, "retention": {"keep_runs": 1}}
    pipeline.save(update_fields=["metadata"])
    out = io.StringIO()
    call_command("cleanupruns", stdout=out)
    assert "kept_short: deleted 1 run(s)" in out.getvalue()
    assert not PipelineRun.objects.filter(id=runs[1].id).exists()
    assert not RunOutputChunk.objects.filter(run_id=runs[1].id).exists()
    assert object_store.names() == sorted([runs[2].log_file, runs[2].metrics_file])

    runs[2].pipeline.metadata = {**pipeline.metadata, "retention": {"days": 1}}
    runs[2].pipeline.save(update_fields=["metadata"])
    PipelineRun.objects.filter(id=runs[2].id).update(queued_at=timezone.now() - timedelta(days=3))
    call_command("cleanupruns", stdout=io.StringIO())
    assert object_store.names() == []


def live_run_of(other: PipelineRun) -> PipelineRun:
    run = PipelineRun.objects.create(
        pipeline=other.pipeline, status=RunStatus.RUNNING, started_at=timezone.now()
    )
    run.log_file, run.metrics_file = output_names(run)
    run.save(update_fields=["log_file", "metrics_file"])
    return run


def test_the_sweep_archives_finished_runs_their_engine_left_in_chunks(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("orphaned"))
    PipelineRun.objects.filter(id=run.id).update(
        status=RunStatus.FAILED, finished_at=timezone.now() - timedelta(minutes=5)
    )
    recent = live_run("recent")
    chunks_append(run_id=recent.id, stream=LOG, offset=0, data=lines("still its engine's"))
    finish(recent)

    OutputArchiveChore()()

    assert object_store.names() == sorted([run.log_file, run.metrics_file])  # an empty one too
    assert RunOutputChunk.objects.filter(run=recent).exists()  # inside the grace period


def test_the_shipper_copies_whole_lines_it_saw_twice(object_store):
    run = live_run()
    output_prepare(run=run)
    path = output_local_path(run.log_file)
    shipper = OutputShipper(engine_id=run.engine_id)
    shipper.follow(run)

    with path.open("ab") as fh:
        fh.write(lines("one") + b"o 2026-12-01T12:00:00.000Z half")
    shipper.ship_all()  # first sight: nothing copied yet
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == b""
    shipper.ship_all()  # seen twice: the whole line, not the half one
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == lines("one")

    # A write cut back before the next pass (a full disk) never reaches the database.
    size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(b" line\n" + lines("dropped"))
    shipper.ship_all()
    with path.open("r+b") as fh:
        fh.truncate(size)
    with path.open("ab") as fh:
        fh.write(b" line\n")
    shipper.ship_all()
    shipper.finish(run)
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == path.read_bytes()
    assert b"dropped" not in path.read_bytes()


def test_preparing_a_run_writes_its_chunks_back_into_the_engines_files(object_store):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("before the restart"))
    path = output_local_path(run.log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lines("before the restart", "never copied"))  # an older engine's tail

    output_prepare(run=run)

    assert path.read_bytes() == lines("before the restart")
    assert output_local_path(run.metrics_file).read_bytes() == b""


def test_a_shipper_whose_engine_lost_the_run_stores_nothing(object_store):
    run = live_run(engine_id="engine-a")
    output_prepare(run=run)
    shipper = OutputShipper(engine_id="engine-a")
    shipper.follow(run)
    path = output_local_path(run.log_file)
    with path.open("ab") as fh:
        fh.write(lines("before"))
    shipper.ship_all()
    shipper.ship_all()
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == lines("before")

    PipelineRun.objects.filter(id=run.id).update(engine_id="engine-b")  # taken over
    with path.open("ab") as fh:
        fh.write(lines("after the take-over"))
    shipper.ship_all()
    shipper.finish(run)
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == lines("before")


def test_lines_the_executor_wrote_before_the_shipper_followed_are_copied(object_store):
    run = live_run(engine_id="engine-a")
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("from the last engine"))
    output_prepare(run=run)
    with output_local_path(run.log_file).open("ab") as fh:
        fh.write(lines("printed at once"))  # between the executor's start and follow()
    shipper = OutputShipper(engine_id="engine-a")
    shipper.follow(run)
    shipper.finish(run)
    assert chunks_read(run_id=run.id, stream=LOG, offset=0) == lines(
        "from the last engine", "printed at once"
    )


def test_an_unreachable_store_answers_503_and_the_run_page_still_shows(object_store, settings):
    run = live_run()
    chunks_append(run_id=run.id, stream=LOG, offset=0, data=lines("hello"))
    finish(run)
    output_archive(run=run)
    # The same store on a port nobody listens on: connections are refused.
    options = {**settings.STORAGES[settings.RUN_OUTPUT_STORAGE]["OPTIONS"]}
    options["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    settings.STORAGES = {
        **settings.STORAGES,
        settings.RUN_OUTPUT_STORAGE: {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": options,
        },
    }

    response = helpers_api.client_for(Role.READONLY).get(reverse("api-run-logs", args=[run.id]))
    body = helpers_api.assert_error(response, 503, "run_storage_unavailable")
    assert "FASTFLOW_S3_BUCKET" in body["detail"] and response["Retry-After"] == "5"
    admin = helpers_admin.client_for(Role.READONLY)
    tail = admin.get(reverse("admin:runs_app_pipelinerun_log", args=[run.pk]))
    assert tail.status_code == 503 and tail.json()["error"] == "run_storage_unavailable"
    page = admin.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
    assert page.status_code == 200 and b"did not answer" in page.content
