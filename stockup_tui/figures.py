"""Figures as text, for both front ends (the screen and the headless status line): no Textual
here, so the service does not import the screen's toolkit to format a number."""

from __future__ import annotations


def fmt_ms(seconds: float | None, sep: str = "") -> str:
    """A duration in milliseconds to 0.1: `3.1ms` (`sep=" "`: `3.1 ms`), `-` when unknown."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}{sep}ms"


def fmt_bytes(n: int) -> str:
    """Sizes for humans: 296 B, 812 kB, 85.3 MB, 1.20 GB."""
    if n < 1_000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1e3:.0f} kB"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


def fmt_queue(depth: int, capacity: int, unit: str) -> str:
    """A bus queue in its own unit: `296 B/67.1 MB (0%)`, `12/1,000 flushes (1%)`,
    `5,219 messages` (no bound: no share)."""
    if unit == "bytes":
        shown = f"{fmt_bytes(depth)}/{fmt_bytes(capacity)}" if capacity > 0 else fmt_bytes(depth)
    else:
        shown = f"{depth:,}/{capacity:,} {unit}" if capacity > 0 else f"{depth:,} {unit}"
    return f"{shown} ({depth / capacity:.0%})" if capacity > 0 else shown
