"""What every trade source provides to the pipeline."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

# Called once per raw frame with the wall-clock receive time (epoch seconds). Async so that the
# pipeline can apply back-pressure: a source awaits it before reading the next frame.
FrameHandler = Callable[[str | bytes, float], Awaitable[None]]

# How long a source reading a socket may leave it unread now, in seconds (0: read as data comes).
# What it reads waits for a flush anyway; see `paced.py`.
ReadPacer = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Disconnection:
    """One loss of the feed: when it happened, why, and how long no data came (`gap`)."""

    at: float  # epoch seconds of the last frame before the loss
    reason: str
    gap: float | None = None  # seconds without data; None while still disconnected


@dataclass(slots=True)
class SourceStats:
    """Counters a source keeps; read by the stats clock (plain ints, no locking on the hot path)."""

    kind: str
    endpoint: str = ""
    connected: bool = False
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    last_frame_at: float | None = None  # epoch seconds
    last_error: str | None = None
    finished: bool = False
    subscribed: tuple[str, ...] = ()
    disconnections: deque[Disconnection] = field(default_factory=lambda: deque(maxlen=100))
    reconnects: int = 0  # connections lost (not attempts): each one needed a reconnect

    @property
    def max_gap(self) -> float:
        """The longest gap without data, the one still going on included."""
        now = time.time()
        return max(
            (d.gap if d.gap is not None else now - d.at for d in self.disconnections),
            default=0.0,
        )

    @property
    def last_gap(self) -> float | None:
        for d in reversed(self.disconnections):
            if d.gap is not None:
                return d.gap
        return None


class TradeSource(Protocol):
    """A producer of raw Finnhub-protocol frames."""

    stats: SourceStats

    async def run(self, on_frame: FrameHandler, pacer: ReadPacer | None = None) -> None:
        """Delivers frames until stopped (or, for finite sources, until the end); a source
        reading a socket lets it rest as long as `pacer` says."""
        ...

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Changes the subscription live."""
        ...

    async def stop(self) -> None: ...


class NullSource:
    """The source of a process without one (`--role analyzer` / `monitor`)."""

    def __init__(self) -> None:
        self.stats = SourceStats(kind="none", finished=True)

    async def run(self, on_frame: FrameHandler, pacer: ReadPacer | None = None) -> None:
        return None

    def set_symbols(self, symbols: Iterable[str]) -> None:
        return None

    async def stop(self) -> None:
        return None
