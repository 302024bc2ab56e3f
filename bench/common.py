"""Shared set-up for the benchmarks: a throwaway installation (temp data dir, pipelines dir and
SQLite database, or DATABASE_URL), real `runscheduler` subprocesses, and small statistics.

Import order matters: `prepare()` sets the environment, then configures Django in this process
with the same settings the engine subprocesses get.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The code under test: this checkout, or another one (`--code-root`, e.g. main's, to compare
# before and after a change in one session). The benchmark scripts themselves come from here.
ROOT = Path(os.environ.get("FASTFLOW_BENCH_CODE_ROOT") or Path(__file__).resolve().parent.parent)
TRIVIAL = "print('hello')\n"


class Bench:
    def __init__(
        self, *, executor: str, keep: bool = False, root: Path | None = None, **env: str
    ) -> None:
        """`root`: a directory to use (and keep) instead of a fresh temp one, so a second
        benchmark run can reuse what the first one generated."""
        self.executor = executor
        self.keep = keep or root is not None
        self.tmp = root or Path(tempfile.mkdtemp(prefix="fastflow-bench-"))
        self.data = self.tmp / "data"
        self.pipelines = self.tmp / "pipelines"
        self.data.mkdir(parents=True, exist_ok=True)
        self.pipelines.mkdir(exist_ok=True)
        self.engines: list[subprocess.Popen] = []
        from cryptography.fernet import Fernet

        self.env = {
            **os.environ,
            "DATABASE_URL": os.environ.get("DATABASE_URL")
            or f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            "FASTFLOW_DATA_DIR": str(self.data),
            "FASTFLOW_PIPELINES_DIR": str(self.pipelines),
            # Kept between benchmark runs, so "warm cache" means warm.
            "FASTFLOW_UV_CACHE_DIR": os.environ.get(
                "FASTFLOW_UV_CACHE_DIR",
                str(Path(tempfile.gettempdir()) / "fastflow-bench-uv-cache"),
            ),
            "FASTFLOW_EXECUTOR": executor,
            "FASTFLOW_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "SECRET_KEY": "bench-" + os.urandom(16).hex(),
            "FASTFLOW_LOG_LEVEL": "WARNING",
            # As in production: with DEBUG on, Django keeps every query an engine makes.
            "DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
            **env,
        }

    def prepare(self) -> None:
        """Migrate the database and configure Django in this process."""
        os.environ.update(self.env)
        self.manage("migrate", "--noinput", quiet=True)
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
        sys.path.insert(0, str(ROOT))
        django.setup()

    def manage(self, *args: str, quiet: bool = False) -> None:
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL if quiet else None,
        )

    def pipeline(self, name: str, main_py: str = TRIVIAL, requirements: str | None = None):
        folder = self.pipelines / name
        folder.mkdir()
        (folder / "main.py").write_text(main_py)
        if requirements is not None:
            (folder / "requirements.txt").write_text(requirements)
        from pipelines_app.models import Pipeline
        from pipelines_app.services import pipelines_sync

        pipelines_sync()
        return Pipeline.objects.get(pipeline_name=name)

    def start_engine(self, **env: str) -> subprocess.Popen:
        log = (self.data / f"engine-{len(self.engines)}.out").open("ab")
        engine = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runscheduler"],
            env={**self.env, **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session, as under systemd or in a container: with the kernel's scheduler
            # autogroups, a shared session would share one CPU share with this benchmark.
            start_new_session=True,
        )
        self.engines.append(engine)
        from runs_app.models import EngineInstance

        deadline = time.monotonic() + 60
        while not EngineInstance.objects.filter(pid=engine.pid).exists():
            if engine.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the engine did not start; see {log.name}")
            time.sleep(0.1)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            if engine.poll() is None:
                engine.send_signal(signal.SIGTERM)
        for engine in self.engines:
            try:
                engine.wait(30)
            except subprocess.TimeoutExpired:
                engine.kill()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"kept {self.tmp}")


def wait_finished(run, timeout: float = 300.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.is_terminal:
            return run
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run.id} did not finish in {timeout:g} s")
        time.sleep(interval)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    ms = [v * 1000 for v in values if v is not None]
    if not ms:
        return float("nan"), float("nan")
    return statistics.median(ms), percentile(ms, 95)


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.0f}"
    return str(value)
