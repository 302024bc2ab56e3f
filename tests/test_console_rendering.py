"""The console's rendering helpers: round axis ticks, escaped SVG text, relative and exact
times, compact durations and sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fastflow_site.charts import (
    DURATION_STEPS,
    Column,
    Lane,
    Segment,
    Span,
    bar_chart,
    downsample,
    line_chart,
    nice_ticks,
    timeline,
)
from fastflow_site.console import format_bytes, format_duration, relative_time, time_tag

NOW = datetime(2030, 6, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("top", "steps", "expected"),
    [
        (37.2, None, [0, 10, 20, 30, 40]),
        (512, None, [0, 200, 400, 600]),
        (0.13, None, [0.0, 0.05, 0.1, 0.15]),
        (58, DURATION_STEPS, [0, 15, 30, 45, 60]),
        (290, DURATION_STEPS, [0, 120, 240, 360]),
        (5000, DURATION_STEPS, [0, 1800, 3600, 5400]),
    ],
)
def test_ticks_are_round_and_reach_the_top(top: float, steps, expected: list) -> None:
    assert nice_ticks(top, steps=steps) == expected


def test_every_text_in_a_chart_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    svgs = [
        bar_chart(
            [Column(label=evil, segments=(Segment(3, "ff-s-SUCCESS", evil, "/?a=1&b=2"),))],
            label=evil,
        ),
        line_chart([(0, 1), (2, 3)], label=evil, value_format=lambda v: evil, x_format=str),
        timeline(
            [Lane(label=evil, spans=[Span(NOW, NOW, "ff-s-FAILED", evil)])],
            since=NOW - timedelta(hours=1),
            until=NOW,
            label=evil,
            time_format=lambda m: evil,
        ),
    ]
    for svg in svgs:
        assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'href="/?a=1&amp;b=2"' in svgs[0]


def test_a_line_chart_keeps_spikes_when_it_thins_out_samples() -> None:
    points = [(float(i), 1.0) for i in range(1000)]
    points[503] = (503.0, 99.0)

    thinned = downsample(points, 100)

    assert len(thinned) == 100 and (503.0, 99.0) in thinned


def test_an_empty_bar_chart_still_draws_its_axis() -> None:
    svg = bar_chart([], label="nothing")

    assert "ff-chart-axis" in svg and ">0<" in svg


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=12), "12 s ago"),
        (timedelta(minutes=3, seconds=10), "3 min ago"),
        (timedelta(hours=1, minutes=5), "1 h 05 min ago"),
        (timedelta(hours=7), "7 h ago"),
        (-timedelta(minutes=5), "in 5 min"),
        (timedelta(hours=30), "yesterday 06:00"),
        (timedelta(days=40), "May 6 12:00"),
        (timedelta(days=400), "2029-05-11 12:00"),
    ],
)
def test_relative_times(delta: timedelta, expected: str) -> None:
    assert relative_time(NOW - delta, now=NOW) == expected


def test_a_time_tag_carries_the_exact_time_to_the_second() -> None:
    tag = time_tag(datetime(2030, 6, 15, 11, 59, 30, 400000, tzinfo=UTC), now=NOW)

    assert tag == (
        '<time datetime="2030-06-15T11:59:30Z" title="2030-06-15 11:59:30 UTC" '
        "data-ff-relative>29 s ago</time>"
    )


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.43, "0.4 s"),
        (12.34, "12.3 s"),
        (30, "30 s"),
        (125, "2 min 05 s"),
        (300, "5 min"),
        (7380, "2 h 03 min"),
        (90000, "1 d 1 h"),
        (None, "—"),
    ],
)
def test_durations(seconds, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(512, "512 B"), (1536, "1.5 KiB"), (512 * 1024 * 1024, "512 MiB"), (None, "—")],
)
def test_sizes(value, expected: str) -> None:
    assert format_bytes(value) == expected
