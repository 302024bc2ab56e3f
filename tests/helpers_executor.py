"""Helpers for the executor tests: building a RunSpec and reading what a run wrote."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from runs_app.engine.base import Execution, Executor, RunSpec
from runs_app.logs import STDERR, STDOUT, LogLine, log_lines_parse
from runs_app.outcome import Outcome

TEST_IMAGE = "fastflow-runner:python{python_version}"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def use_runner_image(test_settings) -> None:
    """Point the Docker executor at the offline test image (scripts/build-runner-image.sh)."""
    import subprocess

    from tests.conftest import IN_CI

    test_settings.FASTFLOW_RUNNER_IMAGE = TEST_IMAGE
    image = TEST_IMAGE.format(python_version=test_settings.FASTFLOW_DEFAULT_PYTHON_VERSION)
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    if found.returncode != 0:
        reason = f"runner image {image} is missing (run scripts/build-runner-image.sh)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def make_spec(pipeline_dir: Path, **overrides) -> RunSpec:
    run_id = overrides.pop("run_id", None) or str(uuid.uuid4())
    data = Path(settings.DATA_DIR)
    values = {
        "run_id": run_id,
        "pipeline_name": pipeline_dir.name,
        "pipeline_dir": pipeline_dir,
        "has_requirements": (pipeline_dir / "requirements.txt").is_file(),
        "python_version": settings.FASTFLOW_DEFAULT_PYTHON_VERSION,
        "env": {},
        "mask_values": (),
        "log_file": data / "logs" / pipeline_dir.name / f"{run_id}.log",
        "metrics_file": data / "metrics" / f"{run_id}.jsonl",
        "timeout": 60,
    }
    values.update(overrides)
    return RunSpec(**values)


def engine_process(script: str, payload: str, settings, **env: str):
    """A separate engine process running `script` (`python -c`, argv[1] = `payload`) with this
    test's data dir, uv cache and runner image; its stdout is a text pipe."""
    import os
    import subprocess
    import sys

    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fastflow_site.settings",
        "FASTFLOW_RUNNER_PULL": "false",
        "FASTFLOW_DATA_DIR": str(settings.DATA_DIR),
        "FASTFLOW_UV_CACHE_DIR": str(settings.FASTFLOW_UV_CACHE_DIR),
        "FASTFLOW_RUNNER_IMAGE": settings.FASTFLOW_RUNNER_IMAGE,
        "FASTFLOW_RUNNER_NETWORK": settings.FASTFLOW_RUNNER_NETWORK,
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, payload],
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_to_end(executor: Executor, spec: RunSpec) -> Outcome:
    return executor.start(spec).wait()


def display(line: LogLine) -> str:
    """A line as the tests compare it: notes (by their source, never their text) with
    `[fastflow] ` in front, output as printed."""
    return f"[fastflow] {line.note_text}" if line.is_note else line.text


def log_entries(path: Path) -> list[LogLine]:
    return log_lines_parse(path.read_bytes()) if path.exists() else []


def text_lines(path: Path) -> list[str]:
    """The log's lines without source and timestamp (notes marked, see `display`)."""
    return [display(line) for line in log_entries(path)]


def log_lines(spec: RunSpec) -> list[str]:
    return text_lines(spec.log_file)


def user_lines(spec: RunSpec) -> list[str]:
    """Only what the pipeline printed, stdout and stderr (no engine notes)."""
    return [line.text for line in log_entries(spec.log_file) if line.source in (STDOUT, STDERR)]


def metric_samples(spec: RunSpec) -> list[dict]:
    if not spec.metrics_file.exists():
        return []
    return [json.loads(line) for line in spec.metrics_file.read_text().splitlines()]


def wait_for_line(spec: RunSpec, text: str, timeout: float = 60) -> None:
    """Block until the pipeline has printed `text` (for tests acting on a live run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in log_lines(spec)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the log: {log_lines(spec)}")


def wait_in_thread(execution: Execution) -> tuple[list[Outcome], object]:
    """Run execution.wait() in a thread, as the engine does; returns (result holder, thread)."""
    import threading

    result: list[Outcome] = []
    thread = threading.Thread(target=lambda: result.append(execution.wait()), daemon=True)
    thread.start()
    return result, thread


# --- Behaviour both executors must share (each test module calls these with its executor) ------


def check_secrets_are_masked_across_split_writes(executor: Executor, make_pipeline_dir) -> None:
    folder = make_pipeline_dir(
        "leaky",
        "import os, sys, time\n"
        "secret = os.environ['API_TOKEN']\n"
        "print('token is', secret)\n"
        "sys.stdout.write('split: ' + secret[:5]); sys.stdout.flush(); time.sleep(0.3)\n"
        "sys.stdout.write(secret[5:] + '\\n'); sys.stdout.flush()\n",
    )
    token = "tok-9f8e7d6c5b4a"
    spec = make_spec(folder, env={"API_TOKEN": token}, mask_values=(token,))
    assert run_to_end(executor, spec).succeeded
    assert user_lines(spec) == ["token is ***", "split: ***"]
    assert token[:5] not in spec.log_file.read_text()


def check_encoded_secrets_are_masked(executor: Executor, make_pipeline_dir) -> None:
    """The pipeline prints its secret base64-, hex- and URL-encoded and inside an HTTP Basic
    header: none of it reaches the log in a form that decodes back to the secret."""
    folder = make_pipeline_dir(
        "encoder",
        "import base64, os, urllib.parse\n"
        "secret = os.environ['API_TOKEN'].encode()\n"
        "print('b64', base64.b64encode(secret).decode())\n"
        "print('b64url', base64.urlsafe_b64encode(secret).decode())\n"
        "print('hex', secret.hex())\n"
        "print('url', urllib.parse.quote(secret, safe=''))\n"
        "print('basic', base64.b64encode(b'user:' + secret).decode())\n",
    )
    token = "tok/9f8e+7d6c?5b4a"
    spec = make_spec(folder, env={"API_TOKEN": token}, mask_values=(token,))
    assert run_to_end(executor, spec).succeeded
    lines = user_lines(spec)
    assert [line.split(" ", 1)[0] for line in lines] == ["b64", "b64url", "hex", "url", "basic"]
    assert all("***" in line for line in lines), lines
    text = spec.log_file.read_text()
    assert token not in text and token.encode().hex() not in text
    assert base64.b64encode(token.encode()).decode().rstrip("=") not in text


def check_the_log_cap_truncates_with_a_notice(executor: Executor, make_pipeline_dir) -> None:
    folder = make_pipeline_dir(
        "chatty", "for i in range(20000):\n    print('line', i)\nprint('done')\n"
    )
    spec = make_spec(folder, log_max_bytes=4096)
    assert run_to_end(executor, spec).succeeded
    lines = log_lines(spec)
    assert "[fastflow] log truncated at 4096 bytes; further output discarded" in lines
    assert "done" not in lines
    assert spec.log_file.stat().st_size < 4096 + 500


def assert_metrics_with_one_note_per_soft_limit(
    spec: RunSpec, outcome: Outcome, *, min_peak_bytes: int
) -> None:
    assert outcome.succeeded
    samples = metric_samples(spec)
    assert samples and {"ts", "cpu_percent", "memory_bytes"} <= set(samples[0])
    assert outcome.peak_memory_bytes >= min_peak_bytes
    notes = [x for x in log_lines(spec) if x.startswith("[fastflow] ")]
    assert sum("memory soft limit exceeded" in x for x in notes) == 1
    assert sum("CPU soft limit exceeded" in x for x in notes) == 1


FORGER = (
    "import sys\n"
    "print('__fastflow_ready__', flush=True)\n"  # the wrapper's token, printed by user code
    "print('[fastflow] timeout after 1 s: container killed', flush=True)\n"
    "sys.stderr.write('n 2026-01-01T00:00:00.000Z log truncated at 10 bytes\\n')\n"
    "sys.stderr.flush()\n"
)


def check_a_pipeline_cannot_forge_notes_or_the_ready_line(
    executor: Executor, make_pipeline_dir
) -> None:
    spec = make_spec(make_pipeline_dir("forger", FORGER))
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded and not outcome.timed_out
    entries = [(line.source, line.text) for line in log_entries(spec.log_file)]
    notes = [text for source, text in entries if source == "n"]
    assert len(notes) == 1 and notes[0].startswith("environment ready in "), entries
    assert outcome.setup_duration is not None and outcome.setup_duration < 30
    assert (STDOUT, "__fastflow_ready__") in entries  # the pipeline's copy is plain output
    assert (STDOUT, "[fastflow] timeout after 1 s: container killed") in entries
    assert (STDERR, "n 2026-01-01T00:00:00.000Z log truncated at 10 bytes") in entries
