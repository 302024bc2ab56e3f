"""gunicorn settings for the web process: `gunicorn -c deploy/gunicorn.conf.py
fastflow_site.wsgi` (the image's default command). A file beside the image's other glue, not a
module of the apps: it ties gunicorn's logging to accounts_app's link-token redaction.

Threaded workers (gthread), so long log streams (SSE) neither block a worker nor hit the worker
timeout. Tuned from the environment (and `.env`, read like the Django settings read it):
FASTFLOW_PORT, FASTFLOW_WEB_WORKERS, FASTFLOW_WEB_THREADS. With FASTFLOW_LOG_FORMAT=json,
gunicorn's own lines and its access log are JSON objects like the application's.
prometheus-client runs in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, a fresh directory per
gunicorn unless set), so /metrics adds up the in-process counters of all workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import environ
from gunicorn.glogging import Logger as GunicornLogger

BASE_DIR = Path(__file__).resolve().parent.parent
environ.Env.read_env(os.environ.get("FASTFLOW_ENV_FILE", BASE_DIR / ".env"), overwrite=False)
# Several worker processes: prometheus-client keeps each one's counters (webhook responses)
# in files there, and /metrics adds them up. Set before any worker imports prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(tempfile.gettempdir()) / f"fastflow-prometheus-{os.getpid()}"),
)


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}: expected a whole number, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name}: must be >= 1, got {value}")
    return value


bind = f"0.0.0.0:{_positive_int('FASTFLOW_PORT', 8000)}"
worker_class = "gthread"
workers = _positive_int("FASTFLOW_WEB_WORKERS", 2)
threads = _positive_int("FASTFLOW_WEB_THREADS", 8)
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
# No `gunicornc` control socket (gunicorn >= 25): nothing uses it, and a read-only or missing
# home directory in a container would only produce a warning at every start.
control_socket_disable = True
SHM = "/dev/shm"  # noqa: S108 - tmpfs for worker heartbeats, not a temporary file
if Path(SHM).is_dir():
    # Worker heartbeats on tmpfs: an overlay or network disk can stall them into timeouts.
    worker_tmp_dir = SHM


class Logger(GunicornLogger):
    """gunicorn's logger, writing JSON objects when FASTFLOW_LOG_FORMAT=json."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from accounts_app.logfilters import RedactLinkTokens

        # The access log has every request line: one-time login links carry their token in it.
        if not any(isinstance(f, RedactLinkTokens) for f in self.access_log.filters):
            self.access_log.addFilter(RedactLinkTokens())
        if not _json():
            return
        from fastflow_site.logformat import JsonFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        if not _json():
            super().access(resp, req, environ, request_time)
            return
        headers = {name.lower(): value for name, value in resp.headers}
        status = getattr(resp, "status_code", None) or str(resp.status).split()[0]
        from accounts_app.logfilters import redact

        path = redact(req.path + (f"?{req.query}" if req.query else ""))
        self.access_log.info(
            "%s %s %s",
            req.method,
            path,
            status,
            extra={
                "method": req.method,
                "path": path,
                "status": int(status),
                "duration_ms": round(request_time.total_seconds() * 1000, 1),
                "remote_addr": environ.get("REMOTE_ADDR", ""),
                "request_id": headers.get("x-request-id", ""),
            },
        )


def _json() -> bool:
    return os.environ.get("FASTFLOW_LOG_FORMAT", "").strip().lower() == "json"


logger_class = Logger


def on_starting(server: Any) -> None:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)  # counts of an earlier run are not ours
    directory.mkdir(parents=True, exist_ok=True)


def on_exit(server: Any) -> None:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
