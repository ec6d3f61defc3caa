"""Figures as text: every bus's queue in its own unit, one way for both front ends."""

from __future__ import annotations

from stockup_tui.figures import fmt_bytes, fmt_ms, fmt_queue


def test_sizes_read_as_sizes() -> None:
    assert [fmt_bytes(n) for n in (296, 812_000, 67_108_864, 2_500_000_000)] == [
        "296 B",
        "812 kB",
        "67.1 MB",
        "2.50 GB",
    ]


def test_each_bus_queue_in_its_unit() -> None:
    assert fmt_queue(296, 67_108_864, "bytes") == "296 B/67.1 MB (0%)"  # Kafka's outbox
    assert fmt_queue(12, 1000, "flushes") == "12/1,000 flushes (1%)"  # the memory bus
    assert fmt_queue(5219, 0, "messages") == "5,219 messages"  # no bound, no share


def test_milliseconds_for_the_status_line_and_the_bus_rows() -> None:
    assert fmt_ms(0.0031) == "3.1ms"
    assert fmt_ms(0.0012, " ") == "1.2 ms"  # RabbitMQ's confirm row has always had the space
    assert fmt_ms(None) == "-"
