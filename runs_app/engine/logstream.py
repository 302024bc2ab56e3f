"""Writing a run's output to its log file as it arrives: timestamped, masked, capped.

The line format (`<source> <UTC time> <text>`, source `o` stdout, `e` stderr, `n` engine note)
is defined with the run's files in `runs_app/logs.py`. The time is when the line reached the
engine (local executor) or the Docker daemon (docker executor).

Executors feed raw bytes per stream (stdout and stderr separately, in whatever chunks the pipe
or the Docker API delivers) and say which stream they came from; this module joins each
stream's bytes into lines, so a secret split across two reads is still masked. The source of
every line is what the executor said, never derived from the text: only `note()` writes `n`
lines. The wrapper's ready line (see `wrapper.py`), the first line on stdout, is swallowed and
its arrival time kept. A full disk drops output (counted, with a notice once there is room
again) instead of failing the run or leaving half a line in the file.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

from fastflow_site.datadir import private_open
from runs_app.logs import NOTE, STDERR, STDOUT, append_whole, log_line, log_line_parse
from runs_app.outcome import CA_BUNDLE_HINT, Outcome, format_bytes

logger = logging.getLogger(__name__)

MASK = b"***"
MIN_SECRET_LENGTH = 4
READY_NOTE = "environment ready in "
# A line longer than this without a newline is written in pieces (each its own log line), so a
# program printing megabytes with no newline neither grows memory nor stalls the live view.
MAX_LINE_BYTES = 64 * 1024
# What uv prints when the package index's TLS certificate does not verify (rustls, native TLS,
# OpenSSL wording), e.g. behind a TLS-intercepting proxy whose CA the runner does not trust.
TLS_FAILURE = re.compile(
    rb"invalid peer certificate|certificate verify failed|unable to get local issuer "
    rb"certificate|self[- ]signed certificate in certificate chain",
    re.IGNORECASE,
)
TRUNCATED_NOTE = "log truncated at "
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# While the log cannot be written, one write is tried at most this often (the rest is dropped
# and counted without a system call), so a pipeline printing fast costs nothing extra.
DISK_RETRY_SECONDS = 1.0


def _base64_forms(raw: bytes) -> set[bytes]:
    """Standard and URL-safe base64 of `raw`: whole (padded and not), and the characters that
    depend on `raw` alone when it sits inside a larger blob (`Basic base64(user:secret)`),
    for each of the three offsets it can have there."""
    forms: set[bytes] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw)
        forms |= {whole, whole.rstrip(b"=")}
        for shift in range(3):
            shifted = encode(b"\0" * shift + raw)
            first = -(-8 * shift // 6)  # the first character holding only bits of `raw`
            end = 8 * (shift + len(raw)) // 6  # characters before this hold only bits of `raw`
            forms.add(shifted[first:end])
    return forms


def _url_forms(value: str) -> set[bytes]:
    """URL- and form-encoded, with the escapes in upper case (RFC 3986) and in lower case."""
    forms = {quote(value, safe=""), quote(value), quote_plus(value)}
    lowered = {re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), form) for form in forms}
    return {form.encode() for form in forms | lowered}


def secret_forms(value: str) -> set[bytes]:
    """One secret value and the forms a program commonly prints it in. Empty for values
    shorter than 4 characters, and no form shorter than that is kept."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    raw = value.encode()
    forms = {raw, raw.hex().encode(), raw.hex().upper().encode()}
    forms |= _base64_forms(raw) | _url_forms(value)
    # Serialised as JSON: quotes, backslashes and control characters escaped (and, by
    # default, every non-ASCII character).
    forms |= {json.dumps(value, ensure_ascii=flag)[1:-1].encode() for flag in (True, False)}
    # A multi-line secret never arrives whole in one line, so its lines are masked too.
    forms |= {line.encode() for line in value.splitlines()}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _trie_pattern(words: set[bytes]) -> bytes:
    """One regex matching any of `words`, longest first, as a trie of shared prefixes.

    A flat `a|b|c` is tried alternative by alternative at every position of every line; with
    each secret in a dozen forms that made masking fifteen times slower than before. A trie
    tries each distinct next byte once. Chains without branches are walked iteratively, so a
    long secret (a PEM key, hex encoded) does not nest the pattern or the recursion.
    """
    root: dict = {}
    for word in words:
        node = root
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}

    def build(node: dict) -> bytes:
        parts = []
        for byte in sorted(key for key in node if key is not None):
            chain, child = bytearray([byte]), node[byte]
            while len(child) == 1 and None not in child:
                (next_byte,) = child
                chain.append(next_byte)
                child = child[next_byte]
            parts.append(re.escape(bytes(chain)) + build(child))
        if not parts:
            return b""
        group = parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"
        if None in node:  # a word may end here; greedy `?` still prefers the longer one
            return (b"(?:" + group + b")?") if len(parts) == 1 else group + b"?"
        return group

    return build(root)


class Masker:
    """Replaces secret values, and their base64, base64url, hex, URL-encoded and JSON-escaped
    forms, with `***`. Values shorter than 4 characters are left alone."""

    def __init__(self, values: tuple[str, ...] | list[str]) -> None:
        forms: set[bytes] = set()
        for value in values:
            forms |= secret_forms(value)
        self.max_length = max(map(len, forms), default=0)
        self._pattern = re.compile(_trie_pattern(forms)) if forms else None

    def mask(self, data: bytes) -> bytes:
        return self._pattern.sub(MASK, data) if self._pattern else data

    def safe_cut(self, data: bytes) -> int:
        """Where `data` may be cut so that no secret straddles the cut and none can start
        before it and finish in data still to come."""
        if not self._pattern:
            return len(data)
        cut = len(data) - (self.max_length - 1)
        for match in self._pattern.finditer(data):
            if match.start() < cut < match.end():
                cut = match.end()
        return max(cut, 0)


class LogWriter:
    """Appends a run's output to its log file. Thread-safe: each stream may be fed from its
    own thread, notes may come from any thread.

    `ready_token`: the wrapper's ready line is expected as the first line on stdout (see
    `wrapper.py`); it is swallowed, `ready_at` keeps its arrival time and, with `started_at`,
    an "environment ready" note is written. Without a token nothing is expected (e.g. after a
    re-attach, when the note is already in the file).
    """

    def __init__(
        self,
        path: Path,
        *,
        mask_values: tuple[str, ...] | list[str] = (),
        max_bytes: int,
        ready_token: str = "",
        started_at: datetime | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.truncated = _already_truncated(path)
        self.ready_at: datetime | None = None  # when the wrapper's ready line arrived
        self.started_at = started_at  # with it, the ready line becomes an "environment ready" note
        self._ready_token = ready_token.encode()
        self._expect_ready = bool(ready_token)
        # The first setup-phase line (before the ready line) reporting a TLS certificate failure.
        self.tls_failure = ""
        self._masker = Masker(mask_values)
        self._max_line = max(max_line_bytes, self._masker.max_length + 1)
        self._buffers = {STDOUT: bytearray(), STDERR: bytearray()}
        self._buffer_at: dict[str, datetime | None] = {STDOUT: None, STDERR: None}
        self._lock = threading.Lock()
        # 0600 in 0700 folders; unbuffered: a failed write leaves nothing in a buffer.
        self._file = private_open(path, "ab", buffering=0)
        self._written = self._file.seek(0, 2)
        self._noted: set[str] = set()
        # Output that could not be written (full disk): in total, and since the last notice.
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.write_error = ""  # why, e.g. "No space left on device"
        self.write_error_errno: int | None = None
        self._unnoticed = (0, 0)
        self._failing_since: float | None = None  # monotonic time of the last failed write

    @property
    def bytes_written(self) -> int:
        return self._written

    def loss_summary(self) -> str:
        """ "" when every line was written, else what was lost and why (the run's error)."""
        if not self.dropped_lines:
            return ""
        what = f"{self.dropped_lines} lines ({format_bytes(self.dropped_bytes)}) of output lost"
        if self.write_error_errno in DISK_FULL_ERRNOS:
            return f"log disk full: {what}"
        return f"log not fully written ({self.write_error}): {what}"

    def feed(self, data: bytes, at: datetime | None = None, *, source: str = STDOUT) -> None:
        """Take a chunk of one stream's output; complete lines are written at once."""
        if not data:
            return
        at = at or datetime.now(UTC)
        with self._lock:
            buffer = self._buffers[source]
            if not buffer:
                self._buffer_at[source] = at
            buffer += data
            lines: list[bytes] = []
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                self._take_line(bytes(buffer[start:end]), source, lines)
                start = end + 1
                self._buffer_at[source] = at  # the next line began in this chunk
            del buffer[:start]
            if len(buffer) >= self._max_line:
                cut = self._masker.safe_cut(bytes(buffer))
                self._take_line(bytes(buffer[:cut]), source, lines)
                del buffer[:cut]
            self._write(lines)

    def note(self, message: str, *, once: str = "", at: datetime | None = None) -> None:
        """Write an engine note. Notes bypass the size cap: they are few and explain the end
        of a run (timeout, OOM, cancel). With `once`, only the first note of that kind counts."""
        with self._lock:
            if self._file.closed:  # closed or abandoned: the run's log is complete
                return
            if once:
                if once in self._noted:
                    return
                self._noted.add(once)
            self._write([log_line(NOTE, at or datetime.now(UTC), message)])

    def abandon(self) -> None:
        """Stop writing at once, dropping unterminated last lines: another engine took the
        run over and writes its log from now on. Later feeds and notes are ignored."""
        with self._lock:
            for buffer in self._buffers.values():
                buffer.clear()
            self._file.close()

    def close(self) -> None:
        """Write what is left of unterminated last lines and close the file."""
        with self._lock:
            if self._file.closed:
                return
            lines: list[bytes] = []
            for source, buffer in self._buffers.items():
                if buffer:
                    self._take_line(bytes(buffer), source, lines)
                    buffer.clear()
            self._failing_since = None  # one last try for the notice of what was lost
            self._write(lines)
            self._file.close()

    def _take_line(self, raw: bytes, source: str, lines: list[bytes]) -> None:
        at = self._buffer_at[source] or datetime.now(UTC)
        if source == STDOUT and self._expect_ready:
            # Only the first stdout line can be the wrapper's: it is printed before user code
            # runs, so the pipeline cannot have printed anything on stdout yet.
            self._expect_ready = False
            if raw.rstrip(b"\r") == self._ready_token:
                self._mark_ready(at, lines)
                return
        setup_phase = self._ready_token and self.ready_at is None
        if setup_phase and not self.tls_failure and TLS_FAILURE.search(raw):
            self.tls_failure = raw.decode("utf-8", "replace").strip()[:300]
        if self.truncated:
            return  # keep draining the stream, write nothing
        entry = log_line(source, at, self._masker.mask(raw))
        if self._written + sum(map(len, lines)) + len(entry) > self.max_bytes:
            notice = f"{TRUNCATED_NOTE}{self.max_bytes} bytes; further output discarded"
            lines.append(log_line(NOTE, at, notice))
            self.truncated = True
            return
        lines.append(entry)

    def _mark_ready(self, at: datetime, lines: list[bytes]) -> None:
        self.ready_at = at
        if self.started_at is not None:
            setup = max((at - self.started_at).total_seconds(), 0.0)
            lines.append(log_line(NOTE, at, f"{READY_NOTE}{setup:.3f} s"))

    def _write(self, lines: list[bytes]) -> None:
        if not lines or self._file.closed:
            return
        data = b"".join(lines)
        notice = b""
        failing = self._failing_since
        if failing is not None and time.monotonic() - failing < DISK_RETRY_SECONDS:
            self._drop(len(lines), len(data))
            return
        if self._unnoticed[0]:
            count, size = self._unnoticed
            reason = "log disk full" if self.write_error_errno in DISK_FULL_ERRNOS else "log error"
            message = f"{reason}: {count} lines ({format_bytes(size)}) of output dropped"
            notice = log_line(NOTE, datetime.now(UTC), message)
        try:
            append_whole(self._file, notice + data, size=self._written)
        except OSError as exc:
            # Never fatal: the pipeline keeps running and its output keeps being drained, so
            # a full log disk costs log lines, not the run. The file keeps every whole line.
            if not self.write_error:
                logger.warning("cannot write the log %s: %s", self.path, exc)
            self.write_error = exc.strerror or str(exc)
            self.write_error_errno = exc.errno
            self._failing_since = time.monotonic()
            self._drop(len(lines), len(data))
            return
        self._written += len(notice) + len(data)
        self._failing_since = None
        self._unnoticed = (0, 0)

    def _drop(self, count: int, size: int) -> None:
        self.dropped_lines += count
        self.dropped_bytes += size
        self._unnoticed = (self._unnoticed[0] + count, self._unnoticed[1] + size)


def _tail_lines(path: Path, size: int) -> list[bytes]:
    with path.open("rb") as fh:
        fh.seek(max(path.stat().st_size - size, 0))
        return fh.read().splitlines()


def _already_truncated(path: Path) -> bool:
    """True when an earlier writer (before an engine restart) already hit the cap."""
    if not path.is_file():
        return False
    for raw in _tail_lines(path, 64 * 1024):
        line = log_line_parse(raw)
        if line.is_note and line.note_text.startswith(TRUNCATED_NOTE):
            return True
    return False


def resume_point(path: Path) -> tuple[datetime | None, int]:
    """Where to resume writing a log after an engine restart.

    Returns the timestamp of the last pipeline line (engine notes do not count) and how many
    pipeline lines carry that same millisecond. A half-written last line is cut off first, so
    it is written again whole.
    """
    if not path.is_file():
        return None, 0
    with path.open("r+b") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(size - 256 * 1024, 0))
        tail = fh.read()
        if tail and not tail.endswith(b"\n"):
            keep = tail.rfind(b"\n") + 1
            fh.truncate(size - len(tail) + keep)
            tail = tail[:keep]
    last: datetime | None = None
    count = 0
    for raw in reversed(tail.splitlines()):
        line = log_line_parse(raw)
        if line.is_note:
            continue
        if line.at is None:
            break  # the first line of the tail may be cut in the middle
        if last is None:
            last = line.at
        if line.at != last:
            break
        count += 1
    return last, count


def noted_ready(path: Path) -> tuple[datetime, float] | None:
    """When the wrapper's ready line arrived and the setup duration, as an earlier engine
    process noted them in the log ("environment ready in …"), if it did."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(1024 * 1024)
    for raw in head.splitlines():
        line = log_line_parse(raw)
        if line.is_note and line.note_text.startswith(READY_NOTE) and line.at is not None:
            try:
                return line.at, float(line.note_text.removeprefix(READY_NOTE).split()[0])
            except (IndexError, ValueError):
                return None
    return None


def note_setup_failure(outcome: Outcome, log: LogWriter) -> None:
    """Name the cause when the run failed while uv set up its environment and uv's output
    (in the log before the ready marker) says why: a bare "exited with code 2" would not."""
    if outcome.cancelled or outcome.timed_out or outcome.oom_killed or not outcome.exit_code:
        return
    if log.ready_at is not None or not log.tls_failure:
        return
    outcome.error = CA_BUNDLE_HINT.format(detail=log.tls_failure)
    log.note(outcome.error)


def noted_setup_duration(path: Path) -> float | None:
    """The setup duration an earlier engine process noted in the log, if any."""
    noted = noted_ready(path)
    return noted[1] if noted else None
