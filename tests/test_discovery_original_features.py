"""Discovery of what the original's pipeline repositories use: notebook folders (with their
specific errors), the `cells` key, and warnings for schedules that can no longer fire."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from pipelines_app.discovery import scan_pipelines
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from pipelines_app.spec import NOTEBOOK_REQUIREMENTS, CellConfig
from tests.conftest import write_pipeline
from tests.helpers_compat import code_cell, markdown_cell, notebook_json, write_notebook


def found(pipelines_dir, name: str):
    return next(p for p in scan_pipelines(pipelines_dir).pipelines if p.name == name)


def test_a_notebook_folder_is_a_pipeline_with_its_cells(pipelines_dir):
    write_notebook(
        pipelines_dir,
        "nb",
        [markdown_cell("# x"), code_cell("1"), code_cell("2", retries=1)],
        pipeline_json={"cells": [{"retries": 2, "delay_seconds": 0.5}, {}]},
    )

    nb = found(pipelines_dir, "nb")

    assert nb.error == "" and nb.warnings == []
    assert nb.spec.type == "notebook" and nb.spec.entry_file == "main.ipynb"
    assert nb.spec.cells == (CellConfig(retries=2, delay_seconds=0.5), CellConfig())
    # Nothing in requirements.txt, yet the runner's packages are warmed up for it.
    assert not nb.has_requirements and nb.requirements_hash
    assert nb.spec.extra_requirements == NOTEBOOK_REQUIREMENTS


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("files", "pipeline_json", "error"),
    [
        (
            ["main.py"],
            {"type": "notebook"},
            '"type" is "notebook" but main.ipynb is missing (found main.py)',
        ),
        (
            ["main.ipynb"],
            {},
            'main.ipynb found but no main.py: set "type": "notebook" in pipeline.json to run '
            "the notebook",
        ),
        (
            ["main.py", "main.ipynb"],
            {"type": "notebook"},
            "both main.py and main.ipynb exist: keep one entry point",
        ),
        (["main.py", "main.ipynb"], {}, "both main.py and main.ipynb exist"),
    ],
)
def test_entry_files_that_do_not_match_the_type_are_a_specific_error(
    pipelines_dir, files, pipeline_json, error
):
    folder = pipelines_dir / "mixed"
    folder.mkdir()
    for name in files:
        content = json.dumps(notebook_json([])) if name.endswith(".ipynb") else "print(1)\n"
        (folder / name).write_text(content)
    (folder / "pipeline.json").write_text(json.dumps(pipeline_json))

    pipelines_sync()

    row = Pipeline.objects.get(pk="mixed")
    assert row.state == "broken"
    assert error in row.discovery_error


@pytest.mark.parametrize(
    ("notebook", "error"),
    [
        ("{not json", "main.ipynb: invalid JSON: "),
        (json.dumps({"cells": "x"}), "main.ipynb: not a Jupyter notebook (no 'cells' array)"),
        (json.dumps({"nbformat": 3, "cells": []}), "main.ipynb: nbformat 3 is not supported"),
        (
            json.dumps(notebook_json([code_cell("1", retries=-1)])),
            "main.ipynb: code cell 1: metadata.fastflow.retries: ",
        ),
        (
            json.dumps(notebook_json([markdown_cell("m"), code_cell("1", delay_seconds="x")])),
            "main.ipynb: code cell 1: metadata.fastflow.delay_seconds: ",
        ),
    ],
)
def test_a_broken_notebook_is_an_error_at_discovery(pipelines_dir, notebook, error):
    folder = pipelines_dir / "bad_nb"
    folder.mkdir()
    (folder / "main.ipynb").write_text(notebook)
    (folder / "pipeline.json").write_text('{"type": "notebook"}')

    assert error in found(pipelines_dir, "bad_nb").error


def test_cells_warnings(pipelines_dir):
    write_notebook(
        pipelines_dir,
        "short",
        [code_cell("1", colour="red")],
        pipeline_json={"cells": [{}, {"retries": 1, "delay": 2}]},
    )
    write_pipeline(pipelines_dir, "script", pipeline_json={"cells": [{"retries": 1}]})

    assert found(pipelines_dir, "short").warnings == [
        "pipeline.json: key 'cells[1].delay': unknown key, ignored",
        "main.ipynb: code cell 1: metadata.fastflow.colour: unknown key, ignored",
        "pipeline.json: key 'cells': 2 entries but main.ipynb has 1 code cell(s); the extra "
        "entries are ignored",
    ]
    assert found(pipelines_dir, "script").warnings == [
        "pipeline.json: key 'cells': applies to notebook pipelines only "
        '("type": "notebook"), ignored'
    ]


@pytest.mark.django_db
def test_ended_windows_and_a_past_run_once_at_are_warnings(pipelines_dir):
    now = timezone.now()
    past, future = (now - timedelta(days=2)).date(), (now + timedelta(days=2)).date()
    write_pipeline(
        pipelines_dir,
        "expired",
        pipeline_json={
            "run_once_at": (now - timedelta(hours=1)).isoformat(),
            "schedules": [
                {"id": "old", "schedule_cron": "0 8 * * *", "schedule_end": past.isoformat()},
                {"id": "live", "schedule_cron": "0 8 * * *", "schedule_end": future.isoformat()},
            ],
        },
    )
    write_pipeline(
        pipelines_dir,
        "fine",
        pipeline_json={
            "schedule_cron": "0 9 * * *",
            "schedule_end": future.isoformat(),
            "run_once_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    write_pipeline(
        pipelines_dir,
        "top_level",
        pipeline_json={"schedule_interval_seconds": 60, "schedule_end": past.isoformat()},
    )

    pipelines_sync()

    expired = Pipeline.objects.get(pk="expired")
    assert expired.state == "ready"  # it still runs on demand
    assert [w.split(":", 2)[1].strip() for w in expired.discovery_warnings] == [
        "key 'schedules[0].schedule_end'",
        "key 'run_once_at'",
    ]
    assert (
        f"the schedule window ended at {past.isoformat()}T23:59:59Z"
        in (expired.discovery_warnings[0])
    )
    assert "is in the past, so no further run happens" in expired.discovery_warnings[1]
    assert Pipeline.objects.get(pk="fine").discovery_warnings == []
    assert Pipeline.objects.get(pk="top_level").discovery_warnings == [
        f"pipeline.json: key 'schedule_end': the schedule window ended at "
        f"{past.isoformat()}T23:59:59Z, so this schedule never fires again (move schedule_end or "
        "remove the schedule)"
    ]
