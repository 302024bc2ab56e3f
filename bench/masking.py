"""How much the log writer's masking costs: the same output written raw (plain file writes),
through `LogWriter` without secrets, and through `LogWriter` masking N secrets in all their
forms (as is, base64/base64url at three alignments, hex, URL-encoded, JSON-escaped).

    .venv/bin/python bench/masking.py [--megabytes 16] [--secrets 10] [--rounds 3]

No database and no engine: this measures the writer alone, in this process.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sample_output(megabytes: float) -> list[bytes]:
    """Log-like lines (ids, words, numbers) in chunks the size a pipe delivers."""
    rng = random.Random(8)
    lines, size = [], 0
    while size < megabytes * 1e6:
        word = "".join(rng.choices(string.ascii_letters, k=12))
        line = f"INFO processing record {len(lines)} id={rng.randint(0, 10**9)} {word} ok\n"
        lines.append(line.encode())
        size += len(lines[-1])
    data = b"".join(lines)
    return [data[i : i + 64 * 1024] for i in range(0, len(data), 64 * 1024)]


def timed(write: callable, chunks: list[bytes], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        write(chunks)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=16)
    parser.add_argument("--secrets", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
    django.setup()
    from runs_app.engine import logstream
    from runs_app.engine.logstream import LogWriter, secret_forms

    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits + "/+=-_"
    secrets = ["".join(rng.choices(alphabet, k=24)) for _ in range(args.secrets)]
    chunks = sample_output(args.megabytes)
    total = sum(map(len, chunks)) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="fastflow-bench-mask-"))

    def raw(chunks: list[bytes]) -> None:
        with (tmp / "raw.log").open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()

    def writer(values: list[str]) -> callable:
        def write(chunks: list[bytes]) -> None:
            path = tmp / "writer.log"
            path.unlink(missing_ok=True)
            log = LogWriter(path, mask_values=values, max_bytes=10**12)
            for chunk in chunks:
                log.feed(chunk)
            log.close()

        return write

    def as_is_only(chunks: list[bytes]) -> None:
        # The masking before encodings were added: each value (and its lines) only.
        original = logstream.secret_forms
        logstream.secret_forms = lambda value: {
            form.encode() for form in (value, *value.splitlines()) if len(form) >= 4
        }
        try:
            writer(secrets)(chunks)
        finally:
            logstream.secret_forms = original

    forms = sum(len(secret_forms(value)) for value in secrets)
    rows = [
        ("raw file writes", timed(raw, chunks, args.rounds)),
        ("LogWriter, no secrets", timed(writer([]), chunks, args.rounds)),
        (f"LogWriter, {len(secrets)} secrets as is only", timed(as_is_only, chunks, args.rounds)),
        (
            f"LogWriter, {len(secrets)} secrets ({forms} forms)",
            timed(writer(secrets), chunks, args.rounds),
        ),
    ]
    print(f"{total:.1f} MB of output, median of {args.rounds} rounds")
    print(f"{'':44} {'seconds':>8} {'MB/s':>8}")
    for name, seconds in rows:
        print(f"{name:44} {seconds:8.2f} {total / seconds:8.1f}")


if __name__ == "__main__":
    main()
