"""The notebook runner: runs a notebook pipeline's `main.ipynb` cell by cell with nbclient.

This file is not imported by the engine: its source is the program of
`uv run ... --with nbclient --with ipykernel python -u -c <this file> <config JSON>` inside the
run's isolated runner (container or local process), so it imports nothing of Fast-Flow and
only the standard library at the top. The kernel is ipykernel's `python3` kernel of the run's
uv environment (jupyter_client starts it with this interpreter), so cells see the pipeline's
requirements.

What it does, in order:
- checks the interpreter is the Python version the pipeline asks for, sets RLIMIT_AS like the
  script wrapper (local executor; inherited by the kernel), then the working directory = the
  pipeline folder;
- starts the kernel (its own stdout goes to our stderr: only this runner writes our stdout, so
  the ready line is its first line), prints the ready line (the environment is ready);
- per code cell (counted from 1; `cells[n-1]` of pipeline.json, overridden by the cell's
  `metadata.fastflow`): start, end (with its duration) and failure as stdout lines starting
  with `notebook: ` (output of the run like any other: this runner shares the run's sandbox
  with the notebook's code, so the engine never treats them as its notes); a failed cell is
  executed again in the same kernel after `delay_seconds`, up to `retries` more times;
- echoes cell outputs as they arrive: streams to stdout/stderr, `text/plain` results, error
  tracebacks (without colour codes), a placeholder for outputs without text (images);
- writes the executed notebook to the run's output directory after every cell (a run killed
  at its timeout still leaves what ran), where the engine keeps it as the run's artifact.

Exit codes: 0 all cells ran, 1 a cell failed (or the notebook cannot run), 137 a MemoryError,
126 the wrong interpreter.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import uuid
import warnings
from typing import Any

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
REASON_MAX = 500


class _Echo:
    """Cell output to our stdout/stderr, keeping track of unterminated lines so a cell event
    always starts on a line of its own."""

    def __init__(self) -> None:
        self.open = {"stdout": False, "stderr": False}

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        stream = "stderr" if stream == "stderr" else "stdout"
        other = "stdout" if stream == "stderr" else "stderr"
        if self.open[other]:
            # Never leave a half line of one stream waiting while the other goes on: the log
            # would show the pieces out of order.
            self.write(other, "\n")
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(text)
        target.flush()
        self.open[stream] = not text.endswith("\n")

    def event(self, text: str) -> None:
        for stream, unterminated in self.open.items():
            if unterminated:
                self.write(stream, "\n")
        print(f"notebook: {text}", flush=True)

    def message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type")
        content = msg.get("content") or {}
        if kind == "stream":
            self.write(content.get("name", "stdout"), content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = content.get("data") or {}
            text = data.get("text/plain")
            if isinstance(text, list):
                text = "".join(text)
            if text:
                self.write("stdout", text if text.endswith("\n") else text + "\n")
            else:
                kinds = ", ".join(sorted(data)) or "empty"
                self.write("stdout", f"[{kinds} output: kept in the executed notebook]\n")
        elif kind == "error":
            trace = "\n".join(content.get("traceback") or [])
            self.write("stderr", ANSI_ESCAPE.sub("", trace) + "\n")


def _cell_options(config_cells: list[list[float]], number: int, cell: Any) -> tuple[int, float]:
    retries, delay = 0, 1.0
    if number <= len(config_cells):
        retries, delay = int(config_cells[number - 1][0]), float(config_cells[number - 1][1])
    own = (cell.get("metadata") or {}).get("fastflow") or {}
    if isinstance(own, dict):
        retries = int(own.get("retries", retries))
        delay = float(own.get("delay_seconds", delay))
    return max(retries, 0), max(delay, 0.0)


def _reason(exc: BaseException) -> str:
    ename = getattr(exc, "ename", "") or type(exc).__name__
    evalue = getattr(exc, "evalue", "") or ""
    text = f"{ename}: {evalue}" if evalue else ename
    return ANSI_ESCAPE.sub("", text).replace("\n", " ")[:REASON_MAX]


def _wrong_python(want: str) -> bool:
    if want and ".".join(map(str, sys.version_info[: want.count(".") + 1])) != want:
        have = sys.version.split()[0]
        print(f"this interpreter is Python {have}, the pipeline asks for {want}", file=sys.stderr)
        return True
    return False


def _limit_memory(limit: int) -> None:
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _read_notebook(nbformat: Any, path: str) -> Any:
    with warnings.catch_warnings():
        # Notebooks saved by older tools lack cell ids (nbformat 4.5); they get them below
        # instead of a warning in every run's log.
        warnings.filterwarnings("ignore", message="Cell is missing an id field")
        notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if notebook.nbformat_minor >= 5 and not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:8]
    return notebook


class _Runner:
    """Runs the code cells of one notebook in one kernel, saving it after every cell."""

    def __init__(
        self, config: dict[str, Any], nbformat: Any, client: Any, echo: _Echo, errors: Any
    ) -> None:
        self.config = config
        self.nbformat = nbformat
        self.client = client
        self.notebook = client.nb
        self.echo = echo
        self.cell_failed, self.kernel_died = errors  # nbclient's exception classes

    def save(self) -> None:
        output = self.config["output"]
        if output:
            partial = output + ".partial"
            self.nbformat.write(self.notebook, partial)
            os.replace(partial, output)

    def run_all(self) -> int:
        code_cells = [(i, c) for i, c in enumerate(self.notebook.cells) if c.cell_type == "code"]
        self.save()  # a run stopped in its first cell still keeps the notebook
        for number, (index, cell) in enumerate(code_cells, start=1):
            label = f"code cell {number} of {len(code_cells)}"
            retries, delay = _cell_options(self.config["cells"], number, cell)
            code = self.run_cell(index, cell, label, retries, delay)
            self.save()
            if code:
                return code
        return 0

    def run_cell(self, index: int, cell: Any, label: str, retries: int, delay: float) -> int:
        """Run one cell with its retries; 0 when it ran, else the runner's exit code."""
        for attempt in range(1, retries + 2):
            suffix = f" (attempt {attempt} of {retries + 1})" if attempt > 1 else ""
            self.echo.event(f"{label} started{suffix}")
            started = time.monotonic()
            try:
                self.client.execute_cell(cell, index)
            except self.cell_failed as exc:
                reason = _reason(exc)
                if getattr(exc, "ename", "") == "MemoryError":
                    self.echo.event(f"{label} failed: {reason}")
                    return int(self.config["oom_code"])
                if attempt > retries:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    self.echo.event(f"{label} failed{tries}: {reason}")
                    return 1
                self.echo.event(
                    f"{label} failed: {reason}; retrying in {delay:g} s "
                    f"(attempt {attempt + 1} of {retries + 1} next)"
                )
                time.sleep(delay)
                continue
            except self.kernel_died as exc:
                self.echo.event(f"{label} failed: the kernel died ({_reason(exc)})")
                return 1
            self.echo.event(f"{label} finished in {time.monotonic() - started:.2f} s")
            return 0
        return 1  # not reached: the last attempt returns


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    if _wrong_python(config.get("python_version", "")):
        return int(config["wrong_python_code"])
    _limit_memory(int(config.get("memory_limit") or 0))
    # jupyter_core's own directories (and no warning about moving them).
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.chdir(config["app_dir"])
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError
        from traitlets.config import Config
    except ImportError as exc:
        print(f"the notebook runner cannot start: {exc}", file=sys.stderr, flush=True)
        return 1

    echo = _Echo()

    class Client(NotebookClient):
        def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
            echo.message(msg)
            return super().output(outs, msg, display_id, cell_index)

    # The kernel talks over Unix sockets in the run's private temporary directory, not TCP
    # ports on the host's loopback (local runs share it with every other process).
    # Short names: a Unix socket path is limited to 107 bytes, and the temporary directory of a
    # local run is already a per-run directory.
    sockets = os.path.join(tempfile.mkdtemp(prefix="ffk-"), "k")
    client = Client(
        _read_notebook(nbformat, config["notebook"]),
        kernel_name="python3",  # ipykernel's kernel of this interpreter, whatever the file says
        timeout=None,  # the run's own timeout applies to the whole notebook
        resources={"metadata": {"path": config["app_dir"]}},
        config=Config({"KernelManager": {"transport": "ipc", "ip": sockets}}),
    )
    runner = _Runner(config, nbformat, client, echo, (CellExecutionError, DeadKernelError))
    # The kernel's own stdout goes to our stderr: only this runner writes our stdout, so the
    # ready line below is its first line (the engine takes only the first for it).
    with client.setup_kernel(stdout=sys.stderr.fileno()):
        print(config["ready"], flush=True)  # the kernel is up: the environment is ready
        return runner.run_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
