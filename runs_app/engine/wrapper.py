"""The Python snippet that starts a pipeline's `main.py` inside `uv run ... python -u -c`.

It prints a per-run random marker line the moment the environment is ready (uv has resolved
and linked the requirements and the interpreter is up), so `setup_duration` is measured from
the log stream itself; the log writer swallows that line. It then runs `main.py` as
`__main__` with the pipeline folder as working directory, `sys.path[0]` = that folder and
`sys.argv == ['main.py']`, like `python main.py` would; `__file__` is `'main.py'` (relative to
the working directory) because runpy puts the same name in `sys.argv[0]`.

A `MemoryError` (the local executor's RLIMIT_AS) is reported with the marker plus ` oom`.

A notebook pipeline runs `notebook_runner.py` instead (`notebook_program`), with the same
marker protocol plus `<marker> note <text>` lines that the log writer records as engine notes
(cell start, end and failure).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

OOM_EVENT = "oom"
OOM_EXIT_CODE = 137  # what a kernel OOM kill gives in Docker; the same code for both executors

_TEMPLATE = """\
import os, sys
if {memory_limit}:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, ({memory_limit}, {memory_limit}))
print({marker!r}, flush=True)
os.chdir({app_dir!r})
sys.argv = ['main.py']
sys.path[0] = {app_dir!r}
import runpy, traceback
try:
    runpy.run_path({main!r}, run_name='__main__')
except SystemExit:
    raise
except BaseException as exc:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != {main!r}:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    if isinstance(exc, MemoryError):
        print({marker!r} + ' {oom}', flush=True)
        sys.exit({oom_code})
    sys.exit(1)
"""


def new_marker() -> str:
    return f"__fastflow_ready_{secrets.token_hex(12)}__"


def wrapper_code(*, marker: str, app_dir: str, memory_limit: int | None = None) -> str:
    """The `-c` program. `memory_limit` (bytes) sets RLIMIT_AS for user code only, so uv and
    the interpreter start-up keep their headroom."""
    return _TEMPLATE.format(
        marker=marker,
        app_dir=app_dir,
        # Relative, as runpy puts it in sys.argv[0]; the working directory is the folder.
        main="main.py",
        memory_limit=int(memory_limit or 0),
        oom=OOM_EVENT,
        oom_code=OOM_EXIT_CODE,
    )


NOTEBOOK_RUNNER = Path(__file__).with_name("notebook_runner.py")
EXECUTED_NOTEBOOK = "main.ipynb"  # the executed copy, in the run's output directory


def notebook_program(
    *,
    marker: str,
    app_dir: str,
    output_dir: str | None,
    cells: tuple[tuple[int, float], ...],
    memory_limit: int | None = None,
) -> list[str]:
    """`python -u -c <runner> <config>` for a notebook pipeline (paths as the runner sees
    them); the executed notebook is written to `output_dir` when there is one."""
    config = {
        "marker": marker,
        "app_dir": app_dir,
        "notebook": f"{app_dir}/main.ipynb",
        "output": f"{output_dir}/{EXECUTED_NOTEBOOK}" if output_dir else "",
        "cells": [list(cell) for cell in cells],
        "memory_limit": int(memory_limit or 0),
        "oom": OOM_EVENT,
        "oom_code": OOM_EXIT_CODE,
    }
    return ["python", "-u", "-c", NOTEBOOK_RUNNER.read_text(), json.dumps(config)]
