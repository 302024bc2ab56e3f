"""Notebook pipelines (`type: notebook`, main.ipynb) executed cell by cell with nbclient in the
same isolated runner as scripts, with both executors for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines_app.spec import NOTEBOOK_REQUIREMENTS
from runs_app.engine.base import RunSpec
from runs_app.logs import STDOUT
from tests.helpers_compat import (
    BOTH_EXECUTORS,
    code_cell,
    markdown_cell,
    use_executor,
    write_notebook,
)
from tests.helpers_executor import (
    log_entries,
    log_lines,
    make_spec,
    run_to_end,
    wait_for_line,
    wait_in_thread,
)

FLAKY = (
    "attempts = globals().get('attempts', 0) + 1\n"
    "if attempts < 3:\n"
    "    raise RuntimeError(f'flaky attempt {attempts}')\n"
    "print('flaky cell passed on attempt', attempts)\n"
)


@pytest.fixture(params=BOTH_EXECUTORS)
def executor(request, settings):
    return use_executor(request, settings, request.param)


def notebook_spec(folder: Path, tmp_path: Path, cells=(), **overrides) -> RunSpec:
    return make_spec(
        folder,
        notebook=True,
        extra_requirements=NOTEBOOK_REQUIREMENTS,
        output_dir=tmp_path / "out" / folder.name,
        cells=tuple(cells),
        timeout=240,
        **overrides,
    )


def cell_output(spec: RunSpec) -> list[str]:
    """What the cells printed: output lines after the environment was ready (uv's own lines on
    a first install come before), without the runner's cell events."""
    entries = log_entries(spec.log_file)
    ready = next(
        i for i, e in enumerate(entries) if e.is_note and e.text.startswith("environment ready")
    )
    return [
        e.text
        for e in entries[ready:]
        if not e.is_note and not (e.source == STDOUT and e.text.startswith("notebook: "))
    ]


def cell_events(spec: RunSpec) -> list[str]:
    """The runner's cell events: output lines on stdout (never engine notes)."""
    entries = log_entries(spec.log_file)
    assert not any(e.is_note and e.text.startswith("notebook: ") for e in entries)
    return [e.text for e in entries if e.source == STDOUT and e.text.startswith("notebook: ")]


def executed(spec: RunSpec) -> dict:
    return json.loads((spec.output_dir / "main.ipynb").read_text())


def text(value: str | list[str]) -> str:
    """nbformat stores multi-line text as a list of lines."""
    return value if isinstance(value, str) else "".join(value)


def test_a_notebook_runs_cell_by_cell_with_outputs_and_retries(executor, pipelines_dir, tmp_path):
    folder = write_notebook(
        pipelines_dir,
        "nb",
        [
            markdown_cell("# Report"),
            code_cell("import os, sys\nvalue = 21\nprint('value is', value)\nprint(os.getcwd())"),
            code_cell(FLAKY, retries=2, delay_seconds=0.2),
            code_cell("value * 2"),
            code_cell("print('to stderr', file=sys.stderr)\nprint('no newline', end='')"),
        ],
    )
    spec = notebook_spec(folder, tmp_path, cells=[(0, 1.0), (0, 1.0)])

    outcome = run_to_end(executor, spec)

    assert outcome.succeeded, log_lines(spec)
    assert outcome.setup_duration is not None
    lines = cell_output(spec)
    app_dir = "/app" if executor.name == "docker" else str(folder.resolve())
    assert lines[:2] == ["value is 21", app_dir]
    assert "flaky cell passed on attempt 3" in lines
    assert "42" in lines and "to stderr" in lines and "no newline" in lines
    assert any("RuntimeError: flaky attempt 1" in line for line in lines)  # the traceback
    cell_notes = cell_events(spec)
    assert cell_notes[0] == "notebook: code cell 1 of 4 started"
    assert cell_notes[1].startswith("notebook: code cell 1 of 4 finished in ")
    assert cell_notes[2] == "notebook: code cell 2 of 4 started"
    # metadata.fastflow (2 retries) wins over pipeline.json's cells[1] (none).
    assert cell_notes[3] == (
        "notebook: code cell 2 of 4 failed: RuntimeError: flaky attempt 1; retrying in 0.2 s "
        "(attempt 2 of 3 next)"
    )
    assert "notebook: code cell 2 of 4 started (attempt 3 of 3)" in cell_notes
    assert cell_notes[-1].startswith("notebook: code cell 4 of 4 finished in ")
    result = executed(spec)
    code = [c for c in result["cells"] if c["cell_type"] == "code"]
    assert text(code[1]["outputs"][0]["text"]) == "flaky cell passed on attempt 3\n"
    assert text(code[2]["outputs"][0]["data"]["text/plain"]) == "42"


def test_a_failing_cell_fails_the_run_and_keeps_what_ran(executor, pipelines_dir, tmp_path):
    folder = write_notebook(
        pipelines_dir,
        "nb_fails",
        [
            code_cell("print('first cell ran')"),
            code_cell("raise ValueError('boom')"),
            code_cell("print('never reached')"),
        ],
    )
    spec = notebook_spec(folder, tmp_path, cells=[(0, 1.0), (1, 0.1)])

    outcome = run_to_end(executor, spec)

    assert outcome.exit_code == 1 and not outcome.succeeded
    assert outcome.error == "pipeline exited with code 1"
    cell_notes = cell_events(spec)
    assert "notebook: code cell 2 of 3 failed after 2 attempts: ValueError: boom" in cell_notes, (
        log_lines(spec)
    )
    assert "never reached" not in cell_output(spec)
    assert any(line.startswith("ValueError: boom") for line in cell_output(spec))
    code = executed(spec)["cells"]
    assert text(code[0]["outputs"][0]["text"]) == "first cell ran\n"
    assert code[1]["outputs"][0]["ename"] == "ValueError"
    assert code[2]["outputs"] == []


def test_cells_see_the_pipelines_requirements_and_secrets_are_masked(
    executor, pipelines_dir, tmp_path
):
    folder = write_notebook(
        pipelines_dir,
        "nb_reqs",
        [code_cell("import os, tomli_w\nprint(tomli_w.dumps({'k': os.environ['TOKEN']}))")],
        requirements="tomli-w==1.0.0\n",
    )
    token = "nb-secret-5f4e3d2c"
    spec = notebook_spec(folder, tmp_path, env={"TOKEN": token}, mask_values=(token,))

    assert run_to_end(executor, spec).succeeded, log_lines(spec)
    assert 'k = "***"' in cell_output(spec)
    assert token not in spec.log_file.read_text()


def test_a_memory_error_in_a_cell_is_reported_as_out_of_memory(
    pipelines_dir, tmp_path, request, settings
):
    # The local executor's RLIMIT_AS reaches the kernel (Docker kills a container at its limit
    # instead; that path is the script runs' own test).
    executor = use_executor(request, settings, "local")
    folder = write_notebook(pipelines_dir, "nb_oom", [code_cell("blob = bytearray(2 * 1024 ** 3)")])
    spec = notebook_spec(folder, tmp_path, mem_hard_limit=1024 * 1024 * 1024)

    outcome = run_to_end(executor, spec)

    assert outcome.oom_killed and outcome.exit_code == 137
    assert any("MemoryError" in n for n in cell_events(spec))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor_name", BOTH_EXECUTORS)
def test_the_engine_keeps_the_executed_notebook_for_the_admin_and_the_api(
    executor_name, request, settings, pipelines_dir
):
    from runs_app.models import RunStatus
    from runs_app.services import run_enqueue
    from tests.helpers_admin import client_for
    from tests.helpers_api import client_for as api_client_for
    from tests.helpers_engine import ThreadEngine, log_notes, log_text, wait_until_finished

    use_executor(request, settings, executor_name)
    write_notebook(pipelines_dir, "report", [code_cell("print('rows:', 3)")])
    pipeline = make_pipeline_synced("report")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor=executor_name):
        wait_until_finished(run, timeout=240)

    assert run.status == RunStatus.SUCCESS, log_text(run)
    assert "rows: 3" in log_text(run)
    assert "executed notebook kept as the run's artifact main.ipynb" in log_notes(run)
    api = api_client_for("READONLY")
    detail = api.get(f"/api/runs/{run.id}/").json()
    (artifact,) = detail["artifacts"]
    assert artifact["name"] == "main.ipynb" and artifact["size"] > 0
    downloaded = api.get(artifact["url"])
    assert downloaded.status_code == 200
    kept = json.loads(b"".join(downloaded.streaming_content))
    assert text(kept["cells"][0]["outputs"][0]["text"]) == "rows: 3\n"
    assert api.get(f"/api/runs/{run.id}/artifacts/other").status_code == 404
    browser = client_for("WRITE")
    page = browser.get(f"/admin/runs_app/pipelinerun/{run.id}/change/")
    admin_url = f"/admin/runs_app/pipelinerun/{run.id}/artifacts/main.ipynb"
    assert admin_url in page.content.decode()
    assert browser.get(admin_url).status_code == 200


def make_pipeline_synced(name: str):
    from pipelines_app.models import Pipeline
    from pipelines_app.services import pipelines_sync

    pipelines_sync()
    pipeline = Pipeline.objects.get(pk=name)
    assert not pipeline.discovery_error, pipeline.discovery_error
    return pipeline


def test_the_warm_up_prepares_the_notebook_runners_environment(executor, pipelines_dir, tmp_path):
    from runs_app.engine.uvcache import COLD_NOTE, env_ready
    from runs_app.engine.warmup import warm_cache

    folder = write_notebook(pipelines_dir, "warm_nb", [code_cell("print('warm')")])
    spec = notebook_spec(folder, tmp_path)

    result = warm_cache(
        pipeline_name="warm_nb",
        pipeline_dir=folder,
        python_version=spec.python_version,
        executor=executor,
        extra_requirements=NOTEBOOK_REQUIREMENTS,
        timeout=300,
    )

    assert result.ok, result.message
    if executor.name == "docker":
        key = executor.env_key(spec, executor.ensure_image(spec.python_version))
    else:
        from runs_app.engine.local_executor import local_env_key

        key = local_env_key(
            pipeline_dir=folder.resolve(),
            python_version=spec.python_version,
            extra_requirements=NOTEBOOK_REQUIREMENTS,
        )
    # A notebook without requirements.txt still gets an environment: the runner's packages.
    assert key is not None and env_ready(executor.name, key) is not None
    assert run_to_end(executor, spec).succeeded, log_lines(spec)
    assert "warm" in cell_output(spec)
    assert not any(COLD_NOTE in line for line in log_lines(spec))  # it ran the prepared one


def test_a_notebook_stopped_midway_keeps_the_cells_that_ran(executor, pipelines_dir, tmp_path):
    folder = write_notebook(
        pipelines_dir,
        "nb_slow",
        [code_cell("print('quick cell done')"), code_cell("import time\ntime.sleep(600)")],
    )
    spec = notebook_spec(folder, tmp_path)
    execution = executor.start(spec)
    result, waiter = wait_in_thread(execution)
    wait_for_line(spec, "code cell 2 of 2 started", timeout=180)

    execution.cancel()  # as a timeout or a cancel request stops it

    waiter.join(60)
    (outcome,) = result
    assert outcome.cancelled and not outcome.succeeded
    code = executed(spec)["cells"]
    assert text(code[0]["outputs"][0]["text"]) == "quick cell done\n"
    assert code[1]["outputs"] == []
