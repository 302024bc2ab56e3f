"""Metrics samples: the JSONL file, peak memory, soft-limit notes, Docker stats and /proc."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from runs_app.engine.logstream import LogWriter
from runs_app.engine.metrics import (
    DockerStatsSampler,
    MetricsRecorder,
    ProcessTreeSampler,
    docker_cpu_percent,
    docker_memory_bytes,
)
from tests.helpers_executor import text_lines

MIB = 1024 * 1024


def recorder(tmp_path: Path, **limits) -> tuple[MetricsRecorder, LogWriter]:
    log = LogWriter(tmp_path / "run.log", max_bytes=1024 * 1024)
    return MetricsRecorder(tmp_path / "metrics" / "run.jsonl", log=log, **limits), log


def samples(metrics: MetricsRecorder) -> list[dict]:
    return [json.loads(line) for line in metrics.path.read_text().splitlines()]


def notes(log: LogWriter) -> list[str]:
    return text_lines(log.path)


def reading(total: int, pre_total: int, system: int, pre_system: int, usage: int, **stats):
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": total},
            "system_cpu_usage": system,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total}, "system_cpu_usage": pre_system},
        "memory_stats": {"usage": usage, "stats": stats},
    }


def test_it_writes_one_json_sample_per_line_and_keeps_the_peak(tmp_path):
    metrics, _ = recorder(tmp_path)
    metrics.record(cpu_percent=12.345, memory_bytes=10 * MIB)
    metrics.observe_memory(50 * MIB)  # a reading between samples still counts for the peak
    metrics.record(cpu_percent=80.0, memory_bytes=30 * MIB)
    metrics.close()
    rows = samples(metrics)
    assert [(r["cpu_percent"], r["memory_bytes"]) for r in rows] == [
        (12.35, 10 * MIB),
        (80.0, 30 * MIB),
    ]
    assert rows[0]["ts"].endswith("Z")
    assert metrics.peak_memory_bytes == 50 * MIB


def test_a_recorder_resuming_a_file_keeps_its_earlier_peak(tmp_path):
    first, _ = recorder(tmp_path)
    first.record(cpu_percent=5.0, memory_bytes=90 * MIB)
    first.close()
    with first.path.open("a") as fh:
        fh.write('{"ts": "2026-11-27T22:45:01.1')  # cut short by an engine crash
    again, _ = recorder(tmp_path)
    again.record(cpu_percent=5.0, memory_bytes=20 * MIB)
    again.close()
    assert again.peak_memory_bytes == 90 * MIB
    lines = again.path.read_text().splitlines()
    assert json.loads(lines[-1])["memory_bytes"] == 20 * MIB


def test_soft_limit_breaches_are_noted_once_per_kind(tmp_path):
    metrics, log = recorder(tmp_path, cpu_soft_limit=0.5, mem_soft_limit=100 * MIB)
    metrics.record(cpu_percent=20.0, memory_bytes=10 * MIB)
    for _ in range(3):
        metrics.record(cpu_percent=150.0, memory_bytes=200 * MIB)
    log.close()
    assert notes(log) == [
        "[fastflow] memory soft limit exceeded: 200.0 MiB used, limit 100.0 MiB",
        "[fastflow] CPU soft limit exceeded: 1.50 cores used, limit 0.5 cores",
    ]


def test_docker_cpu_percent_is_relative_to_one_core():
    # 0.5 s of CPU time during 1 s of (2-core) system time: a quarter of the host = 50 % of a core
    assert docker_cpu_percent(reading(1_500, 1_000, 4_000, 3_000, 0)) == 100.0
    assert docker_cpu_percent(reading(1_000, 1_000, 4_000, 3_000, 0)) == 0.0
    assert docker_cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0


def test_docker_memory_excludes_the_inactive_page_cache():
    assert docker_memory_bytes(reading(0, 0, 0, 0, 100 * MIB, total_inactive_file=30 * MIB)) == (
        70 * MIB
    )
    assert docker_memory_bytes(reading(0, 0, 0, 0, 100 * MIB, inactive_file=10 * MIB)) == 90 * MIB
    assert docker_memory_bytes({"memory_stats": {}}) is None  # the container has stopped


def test_docker_stats_are_thinned_to_the_interval(tmp_path):
    metrics, _ = recorder(tmp_path)
    readings = [reading(i * 10, 0, i * 100, 0, (i + 1) * MIB) for i in range(1, 6)]
    DockerStatsSampler(metrics, interval=3600).consume(readings, threading.Event())
    metrics.close()
    assert len(samples(metrics)) == 1  # one sample per interval...
    assert metrics.peak_memory_bytes == 6 * MIB  # ...but every reading counts for the peak


def test_docker_stats_stop_when_asked(tmp_path):
    metrics, _ = recorder(tmp_path)
    stop = threading.Event()
    stop.set()
    DockerStatsSampler(metrics, interval=0).consume([reading(1, 0, 1, 0, MIB)], stop)
    metrics.close()
    assert samples(metrics) == []


def test_the_process_tree_sampler_sums_children(tmp_path):
    child = "import time; blob = b'x' * (60 * 2**20); print('ready', flush=True); time.sleep(30)"
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    parent = subprocess.Popen(
        [sys.executable, "-c", spawn],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        metrics, _ = recorder(tmp_path)
        stop = threading.Event()
        thread = threading.Thread(
            target=ProcessTreeSampler(metrics, parent.pid, interval=0.05).run, args=(stop,)
        )
        thread.start()
        deadline = time.monotonic() + 10
        while metrics.samples < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)
        metrics.close()
    finally:
        parent.kill()
        parent.wait()
    rows = samples(metrics)
    assert len(rows) >= 2
    assert max(r["memory_bytes"] for r in rows) >= 60 * MIB
    assert metrics.peak_memory_bytes >= 60 * MIB


def test_the_process_tree_sampler_ends_quietly_when_the_process_is_gone(tmp_path):
    # Above the kernel's largest pid (2**22), so no such process can exist.
    metrics, _ = recorder(tmp_path)
    stop = threading.Event()
    thread = threading.Thread(
        target=ProcessTreeSampler(metrics, 2**22 + 12345, interval=0.01).run, args=(stop,)
    )
    thread.start()
    time.sleep(0.1)
    stop.set()
    thread.join(5)
    metrics.close()
    assert samples(metrics) == [] and metrics.peak_memory_bytes is None
