"""The notebook runner: runs a notebook pipeline's `main.ipynb` cell by cell with nbclient.

This file is not imported by the engine: its source is the program of
`uv run ... --with nbclient --with ipykernel python -u -c <this file> <config JSON>` inside the
run's isolated runner (container or local process), so it imports nothing of Fast-Flow and
only the standard library at the top. The kernel is ipykernel's `python3` kernel of the run's
uv environment (jupyter_client starts it with this interpreter), so cells see the pipeline's
requirements.

What it does, in order:
- RLIMIT_AS like the script wrapper (local executor; inherited by the kernel), then the
  working directory = the pipeline folder;
- starts the kernel, prints the setup marker (the environment is ready);
- per code cell (counted from 1; `cells[n-1]` of pipeline.json, overridden by the cell's
  `metadata.fastflow`): start, end (with its duration) and failure as marker lines that the log
  writer turns into engine notes; a failed cell is executed again in the same kernel after
  `delay_seconds`, up to `retries` more times;
- echoes cell outputs as they arrive: streams to stdout/stderr, `text/plain` results, error
  tracebacks (without colour codes), a placeholder for outputs without text (images);
- writes the executed notebook to the run's output directory after every cell (a run killed
  at its timeout still leaves what ran), where the engine keeps it as the run's artifact.

Exit codes: 0 all cells ran, 1 a cell failed (or the notebook cannot run), 137 a MemoryError.
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
    """Cell output to our stdout/stderr, keeping track of unterminated lines so an engine
    note always starts on a line of its own."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.open = {"stdout": False, "stderr": False}

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        stream = "stderr" if stream == "stderr" else "stdout"
        other = "stdout" if stream == "stderr" else "stderr"
        if self.open[other]:
            # Both streams may share one pipe (local runs): never splice two half lines.
            self.write(other, "\n")
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(text)
        target.flush()
        self.open[stream] = not text.endswith("\n")

    def note(self, text: str) -> None:
        for stream, unterminated in self.open.items():
            if unterminated:
                self.write(stream, "\n")
        print(f"{self.marker} note notebook: {text}", flush=True)

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


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    echo = _Echo(config["marker"])
    limit = int(config.get("memory_limit") or 0)
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
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

    class Client(NotebookClient):
        def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
            echo.message(msg)
            return super().output(outs, msg, display_id, cell_index)

    with warnings.catch_warnings():
        # Notebooks saved by older tools lack cell ids (nbformat 4.5); they get them below
        # instead of a warning in every run's log.
        warnings.filterwarnings("ignore", message="Cell is missing an id field")
        notebook = nbformat.read(config["notebook"], as_version=4)
    for cell in notebook.cells:
        if notebook.nbformat_minor >= 5 and not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:8]
    output = config["output"]

    def save() -> None:
        if not output:
            return
        partial = output + ".partial"
        nbformat.write(notebook, partial)
        os.replace(partial, output)

    code_cells = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    total = len(code_cells)
    # The kernel talks over Unix sockets in the run's private temporary directory, not TCP
    # ports on the host's loopback (local runs share it with every other process).
    # Short names: a Unix socket path is limited to 107 bytes, and the temporary directory of a
    # local run is already a per-run directory.
    sockets = os.path.join(tempfile.mkdtemp(prefix="ffk-"), "k")
    client = Client(
        notebook,
        kernel_name="python3",  # ipykernel's kernel of this interpreter, whatever the file says
        timeout=None,  # the run's own timeout applies to the whole notebook
        resources={"metadata": {"path": config["app_dir"]}},
        config=Config({"KernelManager": {"transport": "ipc", "ip": sockets}}),
    )
    with client.setup_kernel():
        print(config["marker"], flush=True)  # the kernel is up: the environment is ready
        for number, (index, cell) in enumerate(code_cells, start=1):
            retries, delay = _cell_options(config["cells"], number, cell)
            attempt = 1
            while True:
                label = f"code cell {number} of {total}"
                suffix = f" (attempt {attempt} of {retries + 1})" if attempt > 1 else ""
                echo.note(f"{label} started{suffix}")
                started = time.monotonic()
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as exc:
                    reason = _reason(exc)
                    if getattr(exc, "ename", "") == "MemoryError":
                        echo.note(f"{label} failed: {reason}")
                        save()
                        print(f"{config['marker']} {config['oom']}", flush=True)
                        return int(config["oom_code"])
                    if attempt <= retries:
                        echo.note(
                            f"{label} failed: {reason}; retrying in {delay:g} s "
                            f"(attempt {attempt + 1} of {retries + 1} next)"
                        )
                        time.sleep(delay)
                        attempt += 1
                        continue
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    echo.note(f"{label} failed{tries}: {reason}")
                    save()
                    return 1
                except DeadKernelError as exc:
                    echo.note(f"{label} failed: the kernel died ({_reason(exc)})")
                    save()
                    return 1
                echo.note(f"{label} finished in {time.monotonic() - started:.2f} s")
                save()
                break
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
