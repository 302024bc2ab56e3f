"""Notebook pipelines (`type: notebook`, main.ipynb) executed cell by cell with nbclient in the
same isolated runner as scripts, with both executors for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines_app.spec import NOTEBOOK_REQUIREMENTS
from runs_app.engine.base import RunSpec
from tests.helpers_compat import (
    BOTH_EXECUTORS,
    code_cell,
    markdown_cell,
    use_executor,
    write_notebook,
)
from tests.helpers_executor import log_lines, make_spec, run_to_end

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
    """What the cells printed: user lines after the environment was ready (uv's own lines on
    a first install come before)."""
    lines = log_lines(spec)
    ready = next(i for i, line in enumerate(lines) if "environment ready in" in line)
    return [line for line in lines[ready:] if not line.startswith("[fastflow] ")]


def notes(spec: RunSpec) -> list[str]:
    return [line.removeprefix("[fastflow] ") for line in log_lines(spec) if "[fastflow]" in line]


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
    cell_notes = [n for n in notes(spec) if n.startswith("notebook: ")]
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
    cell_notes = [n for n in notes(spec) if n.startswith("notebook: ")]
    assert "notebook: code cell 2 of 3 failed after 2 attempts: ValueError: boom" in cell_notes
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
    assert any("MemoryError" in n for n in notes(spec))
