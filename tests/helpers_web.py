"""A real web server (the README's gunicorn command, or `manage.py runserver`) on a free loopback
port, serving the test database and data dir. Tests using it need
`django_db(transaction=True)`: the server is another process and sees committed rows only."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.helpers_engine import database_url
from tests.helpers_settings import PROJECT_DIR, clean_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """`kind` is "gunicorn" (the README's `gunicorn -c deploy/gunicorn.conf.py`, with N
    workers) or "runserver". Production settings: DEBUG off, keys from the test settings."""

    def __init__(
        self,
        kind: str = "gunicorn",
        *,
        workers: int = 2,
        threads: int | None = 8,
        root: Path | None = None,
        collectstatic: bool = False,
        **env: str,
    ) -> None:
        """`root`: where the data and pipelines dirs are (default: the test's own).
        `threads=None`: gunicorn's default sync workers, one request at a time each, so
        concurrent requests are certain to be spread over the workers. `collectstatic`: for
        pages that render templates (DEBUG is off, so static files come from a manifest)."""
        self.kind = kind
        self.workers = workers
        self.threads = threads
        self.collectstatic = collectstatic
        self.port = free_port()
        data = root / "data" if root else Path(settings.DATA_DIR)
        pipelines = root / "pipelines" if root else Path(settings.PIPELINES_DIR)
        data.mkdir(parents=True, exist_ok=True)
        self.output = data / f"web-{kind}-{self.port}.out"
        self.env = clean_env(
            data.parent,
            DEBUG="false",
            SECRET_KEY=settings.SECRET_KEY,
            FASTFLOW_ENCRYPTION_KEY=",".join(settings.FASTFLOW_ENCRYPTION_KEYS),
            DATABASE_URL=database_url(),
            ALLOWED_HOSTS="127.0.0.1",
            FASTFLOW_DATA_DIR=str(data),
            FASTFLOW_PIPELINES_DIR=str(pipelines),
            FASTFLOW_LOG_LEVEL="WARNING",
            FASTFLOW_STATIC_ROOT=str(data / "static"),
            PYTHONUNBUFFERED="1",
            **env,
        )
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.kind == "gunicorn":
            threads = ["--worker-class", "gthread", "--threads", str(self.threads)]
            sync = ["--worker-class", "sync"]
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "fastflow_site.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                *(threads if self.threads else sync),
                "--workers",
                str(self.workers),
                # The access log names the worker (pid) that answered each request.
                "--access-logfile",
                "-",
                "--access-logformat",
                "pid=%(p)s %(m)s %(U)s %(s)s",
                "--config",
                str(self._gunicorn_config()),
            ]
        return [
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{self.port}",
            "--noreload",
            "--skip-checks",
        ]

    def _gunicorn_config(self) -> Path:
        """The production configuration (deploy/gunicorn.conf.py, the README's command) plus
        one hook: "Booting worker" is logged before a worker imports the application, this
        runs after, so the test knows when every worker can answer. Command-line options
        (bind, workers, worker class, access log format) override the file's."""
        production = PROJECT_DIR / "deploy" / "gunicorn.conf.py"
        config = self.output.with_suffix(".conf.py")
        config.write_text(
            f"__file__ = {str(production)!r}\n"
            f"exec(compile(open(__file__).read(), __file__, 'exec'))\n"
            "def post_worker_init(worker):\n    worker.log.info('%s', 'worker ready')\n"
        )
        return config

    def __enter__(self) -> WebServer:
        if self.collectstatic:
            subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                cwd=PROJECT_DIR,
                env=self.env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.kind} exited early:\n{self.read_output()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind} did not come up:\n{self.read_output()}")
            time.sleep(0.2)
        if self.kind == "gunicorn":
            self._wait_for_workers(deadline)
        return self

    def _wait_for_workers(self, deadline: float) -> None:
        """Every worker has loaded the application, so load is really shared."""
        while self.read_output().count("worker ready") < self.workers:
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn workers did not boot:\n{self.read_output()}")
            time.sleep(0.1)

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def answering_pids(self, path_part: str) -> set[str]:
        """The gunicorn workers that answered requests whose path contains `path_part`."""
        return {
            line.split()[0].removeprefix("pid=")
            for line in self.read_output().splitlines()
            if line.startswith("pid=") and path_part in line
        }

    def read_output(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        chunks: list[bytes] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection; with `chunks`, the body is sent with
        `Transfer-Encoding: chunked` and no Content-Length."""
        conn = self.connection()
        try:
            if chunks is not None:
                conn.request(
                    method, path, body=iter(chunks), headers=headers or {}, encode_chunked=True
                )
            else:
                conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()
