"""Core value types that flow through the pipeline.

Trades travel in *columns* per symbol (`SymbolBatch`) rather than one object per trade: the
analyzer can then fill its window arrays with C-level `array.fromlist`, and the bus carries the
batches of one partition in one message per flush (codec `encode_group`). Snapshots are
immutable so the screen can read them from another thread without locks.

The types are msgspec Structs, not dataclasses: the analyzer makes a `SymbolSnapshot` and a
`WindowMetrics` per window for every symbol every second, and the bus decoder a `SymbolBatch`
per symbol per message; a Struct is built in C (a 13-field `WindowMetrics`: 0.11 us against
1.58 us for a frozen dataclass, measured). `msgspec.structs.replace` copies one with changes.
"""

from __future__ import annotations

import msgspec


class SymbolBatch(msgspec.Struct, gc=False):
    """Trades of one symbol, in columns, in the order they were received.

    `t` is the exchange time in epoch milliseconds, `p` the price, `v` the volume, `c` the trade
    conditions (or None). `recv` holds run-length receive times: `(epoch_seconds, n)` says that the
    next `n` trades were received at that wall-clock time; it drives the latency figures.
    """

    symbol: str
    t: list[int] = msgspec.field(default_factory=list)
    p: list[float] = msgspec.field(default_factory=list)
    v: list[float] = msgspec.field(default_factory=list)
    c: list[list[str] | None] = msgspec.field(default_factory=list)
    recv: list[tuple[float, int]] = msgspec.field(default_factory=list)
    # (producer id, sequence) stamped when the batch is published: a batch the bus delivers twice
    # (a redelivery, a republish after a reconnect) carries the same id and is applied once.
    bid: tuple[str, int] | None = None

    def __len__(self) -> int:
        return len(self.t)


class Watermark(msgspec.Struct, frozen=True, gc=False):
    """The query side's event-time progress, written into every partition of the bus.

    `wm_ms` is its receive clock minus the allowed lateness: the analyzer closes every boundary
    up to it, for every symbol of the partition, so quiet symbols slide as the log says and not
    as a clock at the analyzer says. `final` marks the end of a finite source (a replay).
    """

    wm_ms: int
    final: bool = False


class WindowMetrics(msgspec.Struct, frozen=True, gc=False):
    """Exact metrics over the trades of one symbol with `end - window_ms < t <= end`.

    Price fields are None when the window holds no trade; `vwap` is None when the volume is zero.
    """

    window_ms: int
    count: int
    volume: float
    first: float | None
    last: float | None
    min: float | None
    max: float | None
    mean: float | None
    vwap: float | None
    change: float | None
    change_pct: float | None
    rate: float  # trades per second over the window length
    # Live snapshots for the screen only: the window cut into equal buckets, oldest first, each
    # the price of the last trade at or before the bucket's end (buckets before the window's
    # first trade are left out). Empty for emitted snapshots and when the pipeline is not asked.
    closes: tuple[float, ...] = ()


class SymbolSnapshot(msgspec.Struct, frozen=True, gc=False):
    """All windows of one symbol at event time `ts_ms` (a window end)."""

    symbol: str
    ts_ms: int
    last_price: float | None  # latest trade ever seen, even if the windows are empty now
    last_trade_ms: int | None
    windows: tuple[WindowMetrics, ...]


def window_label(window_ms: int) -> str:
    """A window's short name, the largest unit that divides it exactly: 60000 -> 1m, 300000 ->
    5m, 90000 -> 90s, 1500 -> 1500ms (the screen's labels and InfluxDB's stable tag values)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if window_ms >= size and window_ms % size == 0:
            return f"{window_ms // size}{unit}"
    return f"{window_ms}ms"


#: What one bus message holds: a symbol's batch, a group of batches (one partition's share of a
#: flush) or a watermark.
Record = SymbolBatch | list[SymbolBatch] | Watermark
