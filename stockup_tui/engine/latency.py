"""Latency histograms: log-spaced buckets (about 5% wide), cheap to record in bulk.

Recording is per run of trades that share a receive time (one call covers `n` trades), never per
trade. `RecentLatency` keeps the last two intervals so percentiles describe "now", and a
cumulative histogram for the run as a whole.
"""

from __future__ import annotations

import math
import threading

_PER_E = 20  # buckets per factor e: each bucket spans ~5%
_MIN_US = 1.0


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def record(self, seconds: float, n: int = 1) -> None:
        us = seconds * 1e6
        idx = 0 if us <= _MIN_US else int(math.log(us) * _PER_E)
        self.counts[idx] = self.counts.get(idx, 0) + n
        self.total += n

    def merge(self, other: LatencyHistogram) -> None:
        for idx, n in other.counts.items():
            self.counts[idx] = self.counts.get(idx, 0) + n
        self.total += other.total

    def percentile(self, q: float) -> float | None:
        """Seconds at quantile `q` (0..1), the upper edge of its bucket; None if empty."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            if seen >= rank:
                return math.exp((idx + 1) / _PER_E) / 1e6
        return math.exp((max(self.counts) + 1) / _PER_E) / 1e6


class RecentLatency:
    """Percentiles over the current and the previous interval, plus the whole run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = LatencyHistogram()
        self._previous = LatencyHistogram()
        self.cumulative = LatencyHistogram()

    def record_received(self, received: dict[float, int], now: float) -> None:
        """Records `n` trades received at each time `recv` as having taken `now - recv`."""
        with self._lock:
            cur, cum = self._current, self.cumulative
            for recv, n in received.items():
                cur.record(now - recv, n)
                cum.record(now - recv, n)

    def rotate(self) -> None:
        with self._lock:
            self._previous = self._current
            self._current = LatencyHistogram()

    def reset(self) -> None:
        """Forgets everything (e.g. after a benchmark's warm-up)."""
        with self._lock:
            self._current = LatencyHistogram()
            self._previous = LatencyHistogram()
            self.cumulative = LatencyHistogram()

    def recent(self) -> tuple[float | None, float | None]:
        """(p50, p99) in seconds over the last two intervals."""
        with self._lock:
            h = LatencyHistogram()
            h.merge(self._previous)
            h.merge(self._current)
        return h.percentile(0.5), h.percentile(0.99)

    def overall(self) -> tuple[float | None, float | None]:
        with self._lock:
            return self.cumulative.percentile(0.5), self.cumulative.percentile(0.99)
