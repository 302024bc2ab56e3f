"""Writing a run's output to its log file as it arrives: timestamped, masked, capped.

The line format (`<UTC time> <text>`, engine notes prefixed `[fastflow] `) is defined with the
run's files in `runs_app/logs.py`. The time is when the line reached the engine (local executor)
or the Docker daemon (docker executor).

Both executors feed raw bytes in whatever chunks the pipe or the Docker API delivers; this
module joins them into lines, so a secret split across two reads is still masked. The setup
marker line printed by the wrapper (see `wrapper.py`) is swallowed and its arrival time kept;
`<marker> note <text>` lines (the notebook runner's cell events) become engine notes, masked
and counted against the cap like output.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

from fastflow_site.datadir import private_open
from runs_app.logs import NOTE_PREFIX, format_timestamp, parse_timestamp
from runs_app.outcome import CA_BUNDLE_HINT, Outcome

MASK = b"***"
MIN_SECRET_LENGTH = 4
READY_NOTE = "environment ready in "
NOTE_EVENT = b"note "  # after the marker: the rest of the line is an engine note
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
    """Appends a run's output to its log file. Thread-safe: notes may come from any thread."""

    def __init__(
        self,
        path: Path,
        *,
        mask_values: tuple[str, ...] | list[str] = (),
        max_bytes: int,
        marker: str = "",
        started_at: datetime | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.truncated = _already_truncated(path)
        self.ready_at: datetime | None = None  # when the setup marker arrived
        self.started_at = started_at  # with it, the marker becomes an "environment ready" note
        self.events: set[str] = set()  # words after the marker, e.g. "oom"
        # The first setup-phase line (before the marker) reporting a TLS certificate failure.
        self.tls_failure = ""
        self._masker = Masker(mask_values)
        self._marker = marker.encode()
        self._max_line = max(max_line_bytes, self._masker.max_length + 1)
        self._buffer = bytearray()
        self._buffer_at: datetime | None = None
        self._lock = threading.Lock()
        self._file = private_open(path, "ab")  # 0600 in 0700 folders
        self._written = self._file.tell()
        self._noted: set[str] = set()

    @property
    def bytes_written(self) -> int:
        return self._written

    def feed(self, data: bytes, at: datetime | None = None) -> None:
        """Take a chunk of output; complete lines are written (and flushed) at once."""
        if not data:
            return
        at = at or datetime.now(UTC)
        with self._lock:
            if not self._buffer:
                self._buffer_at = at
            self._buffer += data
            lines: list[bytes] = []
            start = 0
            while (end := self._buffer.find(b"\n", start)) >= 0:
                self._take_line(bytes(self._buffer[start : end + 1]), lines)
                start = end + 1
                self._buffer_at = at  # the next line began in this chunk
            del self._buffer[:start]
            if len(self._buffer) >= self._max_line:
                cut = self._masker.safe_cut(bytes(self._buffer))
                self._take_line(bytes(self._buffer[:cut]) + b"\n", lines)
                del self._buffer[:cut]
            self._write(lines)

    def note(self, message: str, *, once: str = "") -> None:
        """Write an engine note. Notes bypass the size cap: they are few and explain the end
        of a run (timeout, OOM, cancel). With `once`, only the first note of that kind counts."""
        with self._lock:
            if self._file.closed:  # closed or abandoned: the run's log is complete
                return
            if once:
                if once in self._noted:
                    return
                self._noted.add(once)
            entry = self._entry(datetime.now(UTC), (NOTE_PREFIX + message).encode() + b"\n")
            self._file.write(entry)
            self._file.flush()
            self._written += len(entry)

    def abandon(self) -> None:
        """Stop writing at once, dropping an unterminated last line: another engine took the
        run over and writes its log from now on. Later feeds and notes are ignored."""
        with self._lock:
            self._buffer.clear()
            self._file.close()

    def close(self) -> None:
        """Write what is left of an unterminated last line and close the file."""
        with self._lock:
            if self._file.closed:
                return
            if self._buffer:
                lines: list[bytes] = []
                self._take_line(bytes(self._buffer) + b"\n", lines)
                self._buffer.clear()
                self._write(lines)
            self._file.close()

    def _take_line(self, raw: bytes, lines: list[bytes]) -> None:
        at = self._buffer_at or datetime.now(UTC)
        if self._marker and raw.startswith(self._marker):
            rest = raw[len(self._marker) :].strip()
            if rest.startswith(NOTE_EVENT):
                note = NOTE_PREFIX.encode() + rest[len(NOTE_EVENT) :] + b"\n"
                self._write_line(at, note, lines)
                return
            if not rest and self.ready_at is None:
                self.ready_at = at
                if self.started_at is not None:
                    setup = max((at - self.started_at).total_seconds(), 0.0)
                    note = f"{NOTE_PREFIX}{READY_NOTE}{setup:.3f} s\n"
                    lines.append(self._entry(at, note.encode()))
                return
            if rest and rest.isalpha():
                self.events.add(rest.decode())
                return
        setup_phase = self._marker and self.ready_at is None
        if setup_phase and not self.tls_failure and TLS_FAILURE.search(raw):
            self.tls_failure = raw.decode("utf-8", "replace").strip()[:300]
        self._write_line(at, raw, lines)

    def _write_line(self, at: datetime, raw: bytes, lines: list[bytes]) -> None:
        if self.truncated:
            return  # keep draining the stream, write nothing
        entry = self._entry(at, self._masker.mask(raw))
        if self._written + sum(map(len, lines)) + len(entry) > self.max_bytes:
            notice = f"log truncated at {self.max_bytes} bytes; further output discarded"
            lines.append(self._entry(at, (NOTE_PREFIX + notice).encode() + b"\n"))
            self.truncated = True
            return
        lines.append(entry)

    @staticmethod
    def _entry(at: datetime, text: bytes) -> bytes:
        # Decoding with "replace" keeps the file valid UTF-8 whatever the pipeline prints.
        return format_timestamp(at).encode() + b" " + text.decode("utf-8", "replace").encode()

    def _write(self, lines: list[bytes]) -> None:
        if not lines or self._file.closed:
            return
        data = b"".join(lines)
        self._file.write(data)
        self._file.flush()
        self._written += len(data)


def _already_truncated(path: Path) -> bool:
    """True when an earlier writer (before an engine restart) already hit the cap."""
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        fh.seek(max(path.stat().st_size - 64 * 1024, 0))
        return b"] log truncated at " in fh.read()


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
        stamp, _, text = raw.partition(b" ")
        if text.startswith(NOTE_PREFIX.encode()):
            continue
        try:
            at = parse_timestamp(stamp.decode())
        except (UnicodeDecodeError, ValueError):
            break  # the first line of the tail may be cut in the middle
        if last is None:
            last = at
        if at != last:
            break
        count += 1
    return last, count


def noted_setup_duration(path: Path) -> float | None:
    """The setup duration an earlier engine process noted in the log, if any."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(1024 * 1024).decode("utf-8", "replace")
    for line in head.splitlines():
        _, _, text = line.partition(" ")
        if text.startswith(NOTE_PREFIX + READY_NOTE):
            try:
                return float(text.removeprefix(NOTE_PREFIX + READY_NOTE).split()[0])
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
