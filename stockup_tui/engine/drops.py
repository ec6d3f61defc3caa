"""Counting of everything the pipeline refuses, by reason.

Nothing is dropped silently: every stage that discards a frame, a trade or a message calls
`Drops.add` with a short reason such as ``"malformed_json"``. The log gets at most one line per
reason per interval (with the count since the last line), so a flood of bad input cannot flood the
log or slow the hot path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

# Reasons that are part of normal operation (the feed resends trades, a bus redelivers a batch
# already applied): logged at INFO, not WARNING.
ROUTINE_REASONS = frozenset({"duplicate", "bus_duplicate"})

# Reasons that mean data this process had accepted was lost on its way out (not input refused):
# counted while quitting, they make the exit code non-zero (see the README, "Exit codes").
LOSS_REASONS = frozenset(
    {
        "bus_unsent_at_exit",
        "bus_unconfirmed",
        "bus_buffer_full",
        "bus_unroutable",
        "analyzer_undrained",
        "influx_unsent_at_exit",
        "influx_buffer_full",
        "metrics_topic_full",
    }
)


def is_loss(reason: str) -> bool:
    return reason in LOSS_REASONS or reason.startswith("sink_error:")


def describe_losses(lost: Mapping[str, int]) -> str:
    """`bus_unsent_at_exit 1,204, influx_unsent_at_exit 12` for a person."""
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(lost.items()))


class Drops:
    """Thread-safe drop counters keyed by reason, with rate-limited logging."""

    def __init__(self, logger: logging.Logger | None = None, log_interval: float = 10.0) -> None:
        self._counts: dict[str, int] = {}
        self._bytes: dict[str, int] = {}  # for the reasons whose items have a size (frames)
        self._since_log: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._log = logger or logging.getLogger("stockup_tui.drops")
        self._interval = log_interval
        self._lock = threading.Lock()

    def add(
        self, reason: str, n: int = 1, detail: str = "", size: int = 0, *, log: bool = True
    ) -> None:
        """Count `n` items dropped for `reason`, of `size` bytes in all when they have one;
        `detail` (e.g. the error) goes to the log only. `log=False`: the caller said it once."""
        if n <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + n
            if size:
                self._bytes[reason] = self._bytes.get(reason, 0) + size
            if not log:
                return
            pending = self._since_log.get(reason, 0) + n
            last = self._last_log.get(reason)
            if last is not None and now - last < self._interval:
                self._since_log[reason] = pending
                return
            self._since_log[reason] = 0
            self._last_log[reason] = now
        suffix = f": {detail[:200]}" if detail else ""
        level = logging.INFO if reason in ROUTINE_REASONS else logging.WARNING
        self._log.log(level, "dropped %d item(s): %s%s", pending, reason, suffix)

    def get(self, reason: str) -> int:
        with self._lock:
            return self._counts.get(reason, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of the totals, safe to hand to another thread."""
        with self._lock:
            return dict(self._counts)

    def bytes_snapshot(self) -> dict[str, int]:
        """Bytes dropped per reason, for the reasons whose items have a size."""
        with self._lock:
            return dict(self._bytes)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
