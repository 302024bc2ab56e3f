"""The log writer shared by both executors: sources, timestamps, live writes, masking, cap,
the wrapper's ready line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runs_app.engine.logstream import LogWriter, Masker, noted_setup_duration, resume_point
from runs_app.engine.wrapper import READY_TOKEN
from runs_app.logs import NOTE, STDERR, STDOUT, format_timestamp, log_line_parse, parse_timestamp

LINE = re.compile(r"^[oen] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (.*)$")


def texts(path: Path) -> list[str]:
    """Each line's text; notes (by their source) marked `[fastflow] `."""
    out = []
    for raw in path.read_text().splitlines():
        assert LINE.match(raw), f"line without source and timestamp: {raw!r}"
        line = log_line_parse(raw)
        out.append(f"[fastflow] {line.text}" if line.source == NOTE else line.text)
    return out


def sources(path: Path) -> list[tuple[str, str]]:
    return [
        (line.source, line.text) for line in map(log_line_parse, path.read_bytes().splitlines())
    ]


def writer(tmp_path: Path, **kwargs) -> LogWriter:
    kwargs.setdefault("max_bytes", 1024 * 1024)
    return LogWriter(tmp_path / "logs" / "p" / "run.log", **kwargs)


def test_it_prefixes_each_line_with_its_source_and_a_utc_timestamp(tmp_path):
    log = writer(tmp_path)
    at = datetime(2026, 11, 27, 22, 45, 1, 123456, tzinfo=UTC)
    log.feed(b"first\nsecond\n", at)
    log.feed(b"oops\n", at, source=STDERR)
    log.note("timeout after 5 s", at=at)
    log.close()
    assert log.path.read_text() == (
        "o 2026-11-27T22:45:01.123Z first\n"
        "o 2026-11-27T22:45:01.123Z second\n"
        "e 2026-11-27T22:45:01.123Z oops\n"
        "n 2026-11-27T22:45:01.123Z timeout after 5 s\n"
    )


def test_a_pipeline_cannot_write_a_line_that_reads_as_an_engine_note(tmp_path):
    log = writer(tmp_path)
    at = datetime(2026, 11, 27, 22, 45, 1, tzinfo=UTC)
    forged = "[fastflow] timeout after 5 s: container killed"
    log.feed(f"{forged}\nn {format_timestamp(at)} log truncated at 10 bytes\n".encode(), at)
    log.feed(f"\nn {format_timestamp(at)} fake note on stderr\n".encode(), at, source=STDERR)
    log.close()
    lines = sources(log.path)
    assert all(source in (STDOUT, STDERR) for source, _ in lines), lines
    assert (STDOUT, forged) in lines
    assert not log.truncated and not writer(tmp_path).truncated  # the cap was not fooled


def test_stdout_and_stderr_are_joined_into_lines_separately(tmp_path):
    log = writer(tmp_path)
    log.feed(b"out part ")
    log.feed(b"err part ", source=STDERR)
    log.feed(b"one\n")
    log.feed(b"two\n", source=STDERR)
    log.close()
    assert sources(log.path) == [(STDOUT, "out part one"), (STDERR, "err part two")]


def test_it_writes_complete_lines_before_the_stream_ends(tmp_path):
    log = writer(tmp_path)
    log.feed(b"visible now\npartial")
    assert texts(log.path) == ["visible now"]
    log.feed(b" line\n")
    assert texts(log.path) == ["visible now", "partial line"]
    log.close()


def test_it_writes_an_unterminated_last_line_on_close(tmp_path):
    log = writer(tmp_path)
    log.feed(b"no newline at the end")
    log.close()
    assert texts(log.path) == ["no newline at the end"]


def test_it_masks_secrets(tmp_path):
    log = writer(tmp_path, mask_values=("s3cr3t-value", "abc"))
    log.feed(b"token=s3cr3t-value and abc stays\n")
    log.close()
    assert texts(log.path) == ["token=*** and abc stays"]


def test_it_masks_a_secret_split_across_two_reads(tmp_path):
    log = writer(tmp_path, mask_values=("hunter2-password",))
    log.feed(b"the password is hunter2-")
    log.feed(b"password, keep it safe\n")
    log.close()
    assert texts(log.path) == ["the password is ***, keep it safe"]
    assert "hunter2" not in log.path.read_text()


def test_it_masks_a_secret_straddling_the_long_line_cut(tmp_path):
    secret = "SECRET-0123456789"
    log = writer(tmp_path, mask_values=(secret,), max_line_bytes=100)
    log.feed(b"x" * 95 + secret[:8].encode())
    log.feed(secret[8:].encode() + b"y" * 150)
    log.close()
    content = log.path.read_text()
    assert secret[:8] not in content.replace("***", "")
    assert "".join(texts(log.path)) == "x" * 95 + "***" + "y" * 150
    assert len(texts(log.path)) > 1  # the long line was written in pieces


def test_it_masks_each_line_of_a_multiline_secret(tmp_path):
    log = writer(tmp_path, mask_values=("-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----",))
    log.feed(b"-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----\n")
    log.close()
    assert texts(log.path) == ["***", "***", "***"]


def test_masker_ignores_values_shorter_than_four_characters():
    masker = Masker(("abc", "", "abcd"))
    assert masker.mask(b"abc abcd") == b"abc ***"


def test_it_truncates_at_the_cap_with_one_notice_and_keeps_draining(tmp_path):
    log = writer(tmp_path, max_bytes=2000)
    for i in range(500):
        log.feed(f"line {i:04d} of output\n".encode())
    log.note("timeout after 30 s: container killed")
    log.close()
    lines = texts(log.path)
    notices = [t for t in lines if t.startswith("[fastflow] log truncated")]
    assert notices == ["[fastflow] log truncated at 2000 bytes; further output discarded"]
    assert lines[-1] == "[fastflow] timeout after 30 s: container killed"
    assert "line 0499 of output" not in lines
    assert log.path.stat().st_size < 2000 + 200
    assert log.truncated


def test_a_new_writer_on_a_truncated_log_writes_nothing_more(tmp_path):
    log = writer(tmp_path, max_bytes=1024)
    log.feed(b"y" * 2000 + b"\n")
    log.close()
    again = writer(tmp_path, max_bytes=1024)
    again.feed(b"after restart\n")
    again.close()
    assert "after restart" not in again.path.read_text()


def test_it_swallows_the_ready_line_and_notes_the_setup_time(tmp_path):
    started = datetime(2026, 11, 27, 22, 45, 0, tzinfo=UTC)
    log = writer(tmp_path, ready_token=READY_TOKEN, started_at=started)
    at = started + timedelta(milliseconds=100)
    log.feed(b"Installed 1 package in 3ms\n", at, source=STDERR)
    log.feed(READY_TOKEN.encode() + b"\n", started + timedelta(milliseconds=250))
    log.feed(b"hello\n", started + timedelta(milliseconds=260))
    log.close()
    assert log.ready_at == started + timedelta(milliseconds=250)
    assert texts(log.path) == [
        "Installed 1 package in 3ms",
        "[fastflow] environment ready in 0.250 s",
        "hello",
    ]
    assert READY_TOKEN not in log.path.read_text()
    assert noted_setup_duration(log.path) == 0.25


def test_only_the_first_stdout_line_can_be_the_ready_line(tmp_path):
    """The wrapper prints it before user code runs: a copy printed later is output, and a run
    whose first stdout line is something else has no setup time (nothing is guessed)."""
    started = datetime(2026, 11, 27, 22, 45, 0, tzinfo=UTC)
    log = writer(tmp_path, ready_token=READY_TOKEN, started_at=started)
    log.feed(f"{READY_TOKEN}\nwork\n{READY_TOKEN}\n".encode(), started + timedelta(seconds=1))
    log.feed(f"{READY_TOKEN}\n".encode(), started + timedelta(seconds=2), source=STDERR)
    log.close()
    assert log.ready_at == started + timedelta(seconds=1)
    assert texts(log.path) == [
        "[fastflow] environment ready in 1.000 s",
        "work",
        READY_TOKEN,
        READY_TOKEN,
    ]

    late = LogWriter(tmp_path / "late.log", max_bytes=4096, ready_token=READY_TOKEN)
    late.feed(f"printed by a .pth file\n{READY_TOKEN}\n".encode())
    late.close()
    assert late.ready_at is None
    assert texts(late.path) == ["printed by a .pth file", READY_TOKEN]


def test_a_note_with_once_is_written_only_the_first_time(tmp_path):
    log = writer(tmp_path)
    log.note("memory soft limit exceeded: 300.0 MiB", once="mem")
    log.note("memory soft limit exceeded: 310.0 MiB", once="mem")
    log.close()
    assert texts(log.path) == ["[fastflow] memory soft limit exceeded: 300.0 MiB"]


def test_it_keeps_the_file_valid_utf8(tmp_path):
    log = writer(tmp_path)
    log.feed(b"bad \xff\xfe bytes\n")
    log.close()
    assert texts(log.path) == ["bad \ufffd\ufffd bytes"]


def test_resume_point_counts_lines_of_the_last_millisecond_and_skips_notes(tmp_path):
    log = writer(tmp_path)
    t1 = datetime(2026, 11, 27, 22, 45, 1, 5000, tzinfo=UTC)
    t2 = t1 + timedelta(milliseconds=7)
    log.feed(b"a\n", t1)
    log.feed(b"b\nc\n", t2)
    log.note("memory soft limit exceeded")
    log.close()
    assert resume_point(log.path) == (t2, 2)


def test_resume_point_cuts_a_half_written_last_line(tmp_path):
    path = tmp_path / "run.log"
    path.write_bytes(b"o 2026-11-27T22:45:01.123Z whole\ne 2026-11-27T22:45:01.456Z hal")
    at, count = resume_point(path)
    assert at == parse_timestamp("2026-11-27T22:45:01.123Z") and count == 1
    assert path.read_bytes() == b"o 2026-11-27T22:45:01.123Z whole\n"


def test_resume_point_reads_a_log_of_the_format_before_sources(tmp_path):
    """A run started before the upgrade and re-attached after it: old lines, then new ones."""
    path = tmp_path / "run.log"
    path.write_bytes(
        b"2026-11-27T22:45:01.123Z old line\n"
        b"2026-11-27T22:45:01.200Z [fastflow] environment ready in 0.080 s\n"
        b"2026-11-27T22:45:01.300Z old again\n"
        b"2026-11-27T22:45:01.400Z [fastflow] memory soft limit exceeded\n"
    )
    assert resume_point(path) == (parse_timestamp("2026-11-27T22:45:01.300Z"), 1)
    assert noted_setup_duration(path) == 0.08
    with path.open("ab") as fh:
        fh.write(b"o 2026-11-27T22:45:02.000Z new line\n")
    assert resume_point(path) == (parse_timestamp("2026-11-27T22:45:02.000Z"), 1)


def test_resume_point_of_a_missing_log_is_the_beginning(tmp_path):
    assert resume_point(tmp_path / "nope.log") == (None, 0)


def test_timestamps_round_trip_including_docker_nanoseconds():
    moment = parse_timestamp("2026-11-27T22:45:01.123456789Z")
    assert moment == datetime(2026, 11, 27, 22, 45, 1, 123456, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-27T22:45:01.123Z"
