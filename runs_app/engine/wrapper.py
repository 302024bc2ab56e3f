"""The Python snippet that starts a pipeline's `main.py` (`python -u -c <wrapper>`).

It prints `READY_TOKEN` as its first line on stdout the moment the environment is ready (the
interpreter is up with the run's packages importable), so `setup_duration` is measured from the
log stream itself; the log writer swallows that line. The token is no secret: what makes it
trustworthy is order. The wrapper prints it before any user code runs, so it is always the
first line on the run's stdout; the writer only ever takes the *first* stdout line for it, and
the same text printed by the pipeline later is ordinary output. (A package's `.pth` file runs
at interpreter start, before the wrapper, so a pipeline's own requirements can at most spoil its
own setup time.)

It then runs `main.py` as `__main__` with the pipeline folder as working directory,
`sys.path[0]` = that folder and `sys.argv == ['main.py']`, like `python main.py` would;
`__file__` is `'main.py'` (relative to the working directory) because runpy puts the same name
in `sys.argv[0]`.

A `MemoryError` (the local executor's RLIMIT_AS) exits with 137, the code of a kernel OOM kill
in Docker, so both executors report an out-of-memory run the same way.

A notebook pipeline runs `notebook_runner.py` instead (`notebook_program`): the same interpreter
check, memory limit, ready line and exit codes, then the notebook cell by cell. Its cell events
(start, end, failure) are ordinary stdout lines starting with `notebook: ` — the runner runs in
the same sandbox as the notebook's code, so they are the run's output, not engine notes.
"""

from __future__ import annotations

import json
from pathlib import Path

READY_TOKEN = "__fastflow_ready__"  # noqa: S105 - not a secret (see above)
OOM_EXIT_CODE = 137  # what a kernel OOM kill gives in Docker; the same code for both executors
WRONG_PYTHON_EXIT_CODE = 126  # "the command could not be executed"


def interpreter_name(python_version: str) -> str:
    """`python3.11` for "3.11" and "3.11.4": the name runner images put on PATH."""
    return "python" + ".".join(python_version.split(".")[:2])


_TEMPLATE = """\
import os, sys
_want = {python_version!r}
if _want and '.'.join(map(str, sys.version_info[:_want.count('.') + 1])) != _want:
    sys.stderr.write('this interpreter is Python %s, the pipeline asks for %s\\n'
                     % (sys.version.split()[0], _want))
    sys.exit({wrong_python_code})
if {memory_limit}:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, ({memory_limit}, {memory_limit}))
print({token!r}, flush=True)
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
    sys.exit({oom_code} if isinstance(exc, MemoryError) else 1)
"""


def wrapper_code(*, app_dir: str, python_version: str = "", memory_limit: int | None = None) -> str:
    """The `-c` program. It first checks that the interpreter is the `python_version` the
    pipeline asks for (`3.11`, or `3.11.4` for an exact one), so a wrong image fails loudly
    instead of silently running another Python. `memory_limit` (bytes) sets RLIMIT_AS for user
    code only, so the interpreter start-up keeps its headroom."""
    return _TEMPLATE.format(
        token=READY_TOKEN,
        python_version=python_version,
        wrong_python_code=WRONG_PYTHON_EXIT_CODE,
        app_dir=app_dir,
        # Relative, as runpy puts it in sys.argv[0]; the working directory is the folder.
        main="main.py",
        memory_limit=int(memory_limit or 0),
        oom_code=OOM_EXIT_CODE,
    )


NOTEBOOK_RUNNER = Path(__file__).with_name("notebook_runner.py")
EXECUTED_NOTEBOOK = "main.ipynb"  # the executed copy, in the run's output directory


def notebook_program(
    *,
    app_dir: str,
    output_dir: str | None,
    cells: tuple[tuple[int, float], ...],
    python_version: str = "",
    memory_limit: int | None = None,
) -> list[str]:
    """`-u -c <runner> <config>` for a notebook pipeline (after the interpreter; paths as the
    runner sees them); the executed notebook is written to `output_dir` when there is one."""
    config = {
        "ready": READY_TOKEN,
        "python_version": python_version,
        "wrong_python_code": WRONG_PYTHON_EXIT_CODE,
        "app_dir": app_dir,
        "notebook": f"{app_dir}/main.ipynb",
        "output": f"{output_dir}/{EXECUTED_NOTEBOOK}" if output_dir else "",
        "cells": [list(cell) for cell in cells],
        "memory_limit": int(memory_limit or 0),
        "oom_code": OOM_EXIT_CODE,
    }
    return ["-u", "-c", NOTEBOOK_RUNNER.read_text(), json.dumps(config)]
