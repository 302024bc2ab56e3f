"""Screenshots of the admin console for the README, from a fresh installation.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png
    .venv/bin/python scripts/screenshots.py --serve    # the same installation, left running

A throw-away installation in a temporary folder: the example pipelines, two days of run
history (rows written with past times, the way an import would), real runs by a real engine
(`runscheduler`, local executor: busy_minute for the run page's log and CPU/RAM chart), the
web server (`runserver`), and headless Chromium (Selenium, as the browser tests use) at
1366 × 900 in light and dark mode and at 390 px. Nothing here is shown as data of a real
installation: the history is generated, the runs are real.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]
OUT = ROOT / "docs" / "screenshots"
WIDTH, HEIGHT, MOBILE_WIDTH = 1366, 900, 390
# Pages shot taller than the window: the run page's CPU/RAM charts come after its log.
TALL = {"run": 1560}
# pipeline: (runs per day, failure share, typical seconds)
HISTORY = {
    "hello_world": (60, 0.0, 1.5),
    "with_parameters": (30, 0.02, 2.0),
    "scheduled": (288, 0.04, 4.0),
    "full_config": (24, 0.12, 95.0),
    "with_requirements": (12, 0.0, 14.0),
    "failing": (8, 1.0, 0.8),
    "busy_minute": (6, 0.1, 60.0),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(base: Path, port: int) -> dict[str, str]:
    pipelines = base / "pipelines"
    shutil.copytree(ROOT / "examples" / "pipelines", pipelines)
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
        "FASTFLOW_DATA_DIR": str(base / "data"),
        "FASTFLOW_PIPELINES_DIR": str(pipelines),
        "FASTFLOW_EXECUTOR": "local",
        "FASTFLOW_BASE_URL": f"http://127.0.0.1:{port}",
        "DEBUG": "true",  # runserver serves the static files (whitenoise serves them in production)
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*MANAGE, *args], env=env, cwd=ROOT, check=True, text=True, capture_output=True
    )
    return result.stdout


# --- the history (runs inside this script's own process, after django.setup()) ------------------


def seed_history(days: float = 2.0) -> None:
    """Runs with past times for every example pipeline, as if it had run for `days`."""
    import django

    django.setup()
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from pipelines_app.models import Pipeline
    from runs_app.models import PipelineRun, RunStatus
    from runs_app.period_stats import run_period_stats_record
    from runs_app.stats import run_stats_record

    rng = random.Random(13)  # the same history every time
    now = timezone.now()
    rows = []
    for name, (per_day, failure_share, seconds) in HISTORY.items():
        count = int(per_day * days)
        for index in range(count):
            queued = (
                now - timedelta(days=days) + timedelta(days=days) * (index + rng.random()) / count
            )
            if queued > now - timedelta(minutes=10):
                continue
            wait = rng.uniform(0.05, 1.5)
            took = max(0.2, rng.gauss(seconds, seconds * 0.25))
            if rng.random() < 0.03:
                took *= 3  # the odd slow run
            failed = rng.random() < failure_share
            cancelled = not failed and rng.random() < 0.01
            status = (
                RunStatus.FAILED
                if failed
                else RunStatus.CANCELLED
                if cancelled
                else RunStatus.SUCCESS
            )
            started = queued + timedelta(seconds=wait)
            rows.append(
                PipelineRun(
                    pipeline_id=name,
                    status=status,
                    triggered_by=rng.choice(
                        ("scheduler", "scheduler", "webhook", "manual", "downstream")
                    ),
                    queued_at=queued,
                    started_at=started,
                    finished_at=started + timedelta(seconds=took),
                    duration=took,
                    exit_code=1 if failed else (-15 if cancelled else 0),
                    error_message="exited with code 1" if failed else "",
                    setup_duration=rng.uniform(0.1, 0.6),
                )
            )
    PipelineRun.objects.bulk_create(rows, batch_size=500)
    with transaction.atomic():  # counted as the engine counts a run that ends
        for run in rows:
            run_period_stats_record(run=run)
            run_stats_record(run=run)
    for name in HISTORY:
        runs = [r for r in rows if r.pipeline_id == name]
        Pipeline.objects.filter(pk=name).update(
            total_runs=F("total_runs") + len(runs),
            successful_runs=F("successful_runs") + sum(r.status == RunStatus.SUCCESS for r in runs),
            failed_runs=F("failed_runs") + sum(r.status == RunStatus.FAILED for r in runs),
            webhook_runs=F("webhook_runs") + sum(r.triggered_by == "webhook" for r in runs),
        )
    print(f"seeded {len(rows)} runs")


# --- the real runs, the server and the browser ---------------------------------------------------


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local server
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def real_runs(env: dict[str, str]) -> str:
    """Queue real runs for the engine; returns the id of the busy_minute run."""
    code = (
        "import django; django.setup();"
        "from pipelines_app.models import Pipeline;"
        "from runs_app.services import run_enqueue;"
        "p = Pipeline.objects.get(pk='busy_minute');"
        "r = run_enqueue(pipeline=p, triggered_by='manual',"
        " parameters={'DURATION_SECONDS': '24', 'MEMORY_MB': '160', 'STEPS': '12'});"
        "[run_enqueue(pipeline=Pipeline.objects.get(pk=n), triggered_by='manual')"
        " for n in ('hello_world', 'failing', 'with_parameters')];"
        "print(r.pk)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, text=True, capture_output=True
    )
    return result.stdout.strip().splitlines()[-1]


def run_status(env: dict[str, str], run_id: str) -> str:
    code = (
        "import django; django.setup();"
        "from runs_app.models import PipelineRun;"
        f"print(PipelineRun.objects.get(pk='{run_id}').status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, text=True, capture_output=True
    )
    return result.stdout.strip()


def browser():  # noqa: ANN201 - selenium's driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=shutil.which("chromedriver"))
    )
    driver.set_page_load_timeout(60)
    return driver


def shoot(driver, url: str, path: Path, *, theme: str, width: int, height: int) -> None:  # noqa: ANN001
    driver.set_window_size(width, height)
    driver.get(url)
    driver.execute_script(f"localStorage.setItem('theme', '{theme}');")
    driver.get(url)
    time.sleep(1.2)  # live pages poll once; times settle
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--serve", action="store_true", help="keep the installation running")
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_only:
        seed_history()
        return 0

    base = Path(tempfile.mkdtemp(prefix="fastflow-screens-"))
    port = free_port()
    env = environment(base, port)
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "syncpipelines")
    subprocess.run([sys.executable, __file__, "--seed-only"], env=env, cwd=ROOT, check=True)
    link = re.search(r"https?://\S+/login-link/\S+", manage(env, "createadmin", "admin"))
    assert link, "createadmin printed no login link"
    login_path = "/" + link.group(0).split("/", 3)[3]

    children = [
        subprocess.Popen([*MANAGE, "runscheduler"], env=env, cwd=ROOT),
        subprocess.Popen(
            [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"], env=env, cwd=ROOT
        ),
    ]
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/healthz")
        busy = real_runs(env)
        if args.serve:
            print(f"serving at {base_url}{login_path}  (Ctrl-C stops)", flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        deadline = time.monotonic() + 240
        while run_status(env, busy) not in ("SUCCESS", "FAILED", "CANCELLED"):
            if time.monotonic() > deadline:
                raise SystemExit("the busy_minute run did not finish in 4 minutes")
            time.sleep(2)
        args.out.mkdir(parents=True, exist_ok=True)
        driver = browser()
        try:
            driver.get(base_url + login_path)
            pages = {
                "dashboard": "/admin/",
                "run": f"/admin/runs_app/pipelinerun/{busy}/change/",
                "pipeline": "/admin/pipelines_app/pipeline/busy_minute/change/",
                "runs": "/admin/runs_app/pipelinerun/",
                "timeline": "/admin/runs_app/pipelinerun/timeline/",
            }
            for name, url in pages.items():
                for theme in ("light", "dark"):
                    shoot(
                        driver,
                        base_url + url,
                        args.out / f"{name}-{theme}.png",
                        theme=theme,
                        width=WIDTH,
                        height=TALL.get(name, HEIGHT),
                    )
            shoot(
                driver,
                base_url + pages["dashboard"],
                args.out / "dashboard-mobile.png",
                theme="light",
                width=MOBILE_WIDTH,
                height=844,
            )
        finally:
            driver.quit()
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
    sys.exit(main())
