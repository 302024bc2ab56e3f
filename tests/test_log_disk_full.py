"""A full log disk costs log lines, never the run, the engine or what was already written.

The data dir is a real 20 MiB tmpfs; the pipeline prints about 40 MB, then (once the test has
freed some room) one more line. The log keeps every whole line it had, says how much was
dropped once there is room again, the run records "log disk full", /readyz reports the disk and
the engine runs the next run normally.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from runs_app.logs import NOTE, STDOUT, log_lines_parse
from runs_app.models import RunStatus
from runs_app.services import run_enqueue
from tests.conftest import IN_CI
from tests.helpers_engine import (
    ThreadEngine,
    log_text,
    make_pipeline,
    wait_for,
    wait_until_finished,
)
from tests.helpers_executor import use_runner_image

pytestmark = pytest.mark.django_db(transaction=True)

LINE_RE = re.compile(rb"^[oen] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z .*$")
FILLER_BYTES = 3 * 1024 * 1024
# ~40 MB of numbered lines, then wait for the test's go-ahead (the file `go`), then one line.
FLOOD = (
    "import os, time\n"
    "for i in range(400_000):\n"
    "    print(f'{i:08d} ' + 'x' * 90)\n"
    "here = os.path.dirname(os.path.abspath('main.py'))\n"
    "while not os.path.exists(os.path.join(here, 'go')):\n"
    "    time.sleep(0.05)\n"
    "time.sleep(1.5)\n"  # past the writer's retry pause
    "print('after the disk had room again', flush=True)\n"
)


@pytest.fixture
def small_disk(tmp_path, settings):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {done.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        data = mount / "data"
        data.mkdir()
        settings.DATA_DIR = data
        settings.LOGS_DIR = data / "logs"
        settings.METRICS_DIR = data / "metrics"
        settings.FASTFLOW_LOG_MAX_BYTES = 200 * 1024 * 1024  # the disk fills first
        settings.FASTFLOW_LOG_DISK_MIN_FREE_BYTES = 8 * 1024 * 1024
        (mount / "filler").write_bytes(b"\0" * FILLER_BYTES)  # freed later by the test
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def executor_name(request, settings) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
        use_runner_image(settings)
        settings.FASTFLOW_RUNNER_NETWORK = "none"
    return request.param


def test_a_full_log_disk_drops_output_with_a_notice_and_the_run_says_so(small_disk, executor_name):
    flood = make_pipeline("flood", FLOOD)
    run = run_enqueue(pipeline=flood, triggered_by="manual")
    with ThreadEngine(executor=executor_name) as engine:
        wait_for(lambda: run.refresh_from_db() or run.log_file, timeout=120, what="the start")
        log = Path(run.log_file)

        def flood_taken() -> bool:
            """Every flood line was written or dropped (Docker's stream may lag behind the
            container, so the file alone cannot tell)."""
            active = engine.dispatcher._active.get(str(run.id))
            writers = active and active.execution and active.execution._writers
            if not writers:
                return False
            written = sum(1 for raw in log.read_bytes().splitlines() if raw.startswith(b"o "))
            return writers[0].dropped_lines > 0 and written + writers[0].dropped_lines >= 400_000

        wait_for(flood_taken, timeout=300, interval=0.5, what="the flood to be taken")
        ready = Client().get("/readyz")
        assert ready.status_code == 503 and "log disk" in ready.json()["reason"]

        (small_disk / "filler").unlink()  # room again
        (flood.folder / "go").write_text("")
        wait_until_finished(run, timeout=180)

        data = log.read_bytes()
        log.unlink()  # the next run needs the room
        after = make_pipeline("after", "print('still working')\n")
        next_run = run_enqueue(pipeline=after, triggered_by="manual")
        wait_until_finished(next_run, timeout=120)

    # The pipeline never noticed: it ran to its end and succeeded.
    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.exit_code == 0
    match = re.fullmatch(
        r"log disk full: (\d+) lines \(([\d.]+) MiB\) of output lost", run.error_message
    )
    assert match, run.error_message
    dropped = int(match[1])

    # Nothing already written is corrupted: whole lines only, the numbers in order, and every
    # gap (room came and went) announced by a notice counting exactly the lines it lost.
    raws = data.splitlines()
    assert data.endswith(b"\n") and all(LINE_RE.match(raw) for raw in raws)
    lines = log_lines_parse(data)
    expected, noticed = 0, 0
    assert lines[0].source == NOTE and lines[0].text.startswith("environment ready in ")
    for line in lines[1:-1]:
        if line.source == NOTE:
            notice = re.fullmatch(
                r"log disk full: (\d+) lines \(.* MiB\) of output dropped", line.text
            )
            assert notice, line.text
            expected += int(notice[1])
            noticed += int(notice[1])
        else:
            assert (line.source, line.text) == (STDOUT, f"{expected:08d} " + "x" * 90)
            expected += 1
    assert expected == 400_000 and noticed == dropped > 0
    # Once there was room again, the pipeline's output went on (after the last notice).
    assert lines[-2].source == NOTE
    assert (lines[-1].source, lines[-1].text) == (STDOUT, "after the disk had room again")

    assert next_run.status == RunStatus.SUCCESS, next_run.error_message
    assert "still working" in log_text(next_run)
