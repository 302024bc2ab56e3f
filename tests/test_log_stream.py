"""The log writer shared by both executors: timestamps, live writes, masking, cap, marker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runs_app.engine.logstream import LogWriter, Masker, noted_setup_duration, resume_point
from runs_app.logs import format_timestamp, parse_timestamp

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (.*)$")
MARKER = "__fastflow_ready_test__"


def texts(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match, f"line without timestamp prefix: {line!r}"
        out.append(match.group(1))
    return out


def writer(tmp_path: Path, **kwargs) -> LogWriter:
    kwargs.setdefault("max_bytes", 1024 * 1024)
    return LogWriter(tmp_path / "logs" / "p" / "run.log", **kwargs)


def test_it_prefixes_each_line_with_a_utc_timestamp(tmp_path):
    log = writer(tmp_path)
    at = datetime(2026, 11, 27, 22, 45, 1, 123456, tzinfo=UTC)
    log.feed(b"first\nsecond\n", at)
    log.close()
    assert log.path.read_text() == (
        "2026-11-27T22:45:01.123Z first\n2026-11-27T22:45:01.123Z second\n"
    )


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


def test_it_swallows_the_setup_marker_and_notes_the_setup_time(tmp_path):
    started = datetime(2026, 11, 27, 22, 45, 0, tzinfo=UTC)
    log = writer(tmp_path, marker=MARKER, started_at=started)
    log.feed(b"Installed 1 package in 3ms\n", started + timedelta(milliseconds=100))
    log.feed(MARKER.encode() + b"\n", started + timedelta(milliseconds=250))
    log.feed(b"hello\n", started + timedelta(milliseconds=260))
    log.close()
    assert log.ready_at == started + timedelta(milliseconds=250)
    assert texts(log.path) == [
        "Installed 1 package in 3ms",
        "[fastflow] environment ready in 0.250 s",
        "hello",
    ]
    assert MARKER not in log.path.read_text()
    assert noted_setup_duration(log.path) == 0.25


def test_it_records_marker_events_without_writing_them(tmp_path):
    log = writer(tmp_path, marker=MARKER)
    log.feed(f"{MARKER}\nMemoryError\n{MARKER} oom\n".encode())
    log.close()
    assert log.events == {"oom"}
    assert texts(log.path) == ["MemoryError"]


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
    path.write_bytes(b"2026-11-27T22:45:01.123Z whole\n2026-11-27T22:45:01.456Z hal")
    at, count = resume_point(path)
    assert at == parse_timestamp("2026-11-27T22:45:01.123Z") and count == 1
    assert path.read_bytes() == b"2026-11-27T22:45:01.123Z whole\n"


def test_resume_point_of_a_missing_log_is_the_beginning(tmp_path):
    assert resume_point(tmp_path / "nope.log") == (None, 0)


def test_timestamps_round_trip_including_docker_nanoseconds():
    moment = parse_timestamp("2026-11-27T22:45:01.123456789Z")
    assert moment == datetime(2026, 11, 27, 22, 45, 1, 123456, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-27T22:45:01.123Z"
