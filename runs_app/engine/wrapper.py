"""The Python snippet that starts a pipeline's `main.py` inside `uv run ... python -u -c`.

It prints a per-run random marker line the moment the environment is ready (uv has resolved
and linked the requirements and the interpreter is up), so `setup_duration` is measured from
the log stream itself; the log writer swallows that line. It then runs `main.py` as
`__main__` with the pipeline folder as working directory, `sys.path[0]` = that folder and
`sys.argv == ['main.py']`, like `python main.py` would; `__file__` is `'main.py'` (relative to
the working directory), the same name as in `sys.argv[0]`.

A `MemoryError` (the local executor's RLIMIT_AS) is reported with the marker plus ` oom`.
"""

from __future__ import annotations

import secrets

OOM_EVENT = "oom"
OOM_EXIT_CODE = 137  # what a kernel OOM kill gives in Docker; the same code for both executors

# `main.py` is compiled and executed in the interpreter's own `__main__` module, reset to what
# `python main.py` gives it, instead of through runpy: importing runpy and traceback (re,
# textwrap, linecache, ...) cost ~30 ms per run on a loaded 2-core machine, a third of the
# engine's whole overhead over a raw `python main.py`. traceback is imported only on an error.
# The module's namespace is cleared before main.py runs, so the except branch imports anew.
_TEMPLATE = """\
import os, sys
if {memory_limit}:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, ({memory_limit}, {memory_limit}))
print({marker!r}, flush=True)
os.chdir({app_dir!r})
sys.argv = ['main.py']
sys.path[0] = {app_dir!r}
def _fastflow_main():
    import __main__
    from importlib.machinery import SourceFileLoader
    with open({main!r}, 'rb') as fh:
        code = compile(fh.read(), {main!r}, 'exec', dont_inherit=True)
    scope = __main__.__dict__
    builtins = scope['__builtins__']
    scope.clear()
    scope.update(__name__='__main__', __doc__=None, __package__=None, __spec__=None,
                 __file__={main!r}, __cached__=None, __builtins__=builtins,
                 __loader__=SourceFileLoader('__main__', {main!r}))
    return code, scope
try:
    exec(*_fastflow_main())
except SystemExit:
    raise
except BaseException as exc:
    import sys, traceback
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
