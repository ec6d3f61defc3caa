"""Exact event-time sliding windows per symbol; the output is a pure function of the input log.

The analyzer reads the records of each bus partition in log order (`partition.py` applies the
rules to one partition): trade batches, keyed by symbol so that all of a symbol's trades are in
one partition, and watermark records that the query side writes into every partition. Nothing
else moves it: not the wall clock, not another partition, not the order partitions are read in.
Restarts replay from a checkpoint to the same state (`Partition.checkpoint`). The rules (the
README quotes them):

* **Window.** A window of length W ending at E covers exactly the trades of the symbol with
  ``E - W < t <= E``. Metrics: count; volume = sum v; first = price of the earliest trade (ties:
  first received); last = price of the latest trade (ties: last received); min; max;
  mean = sum p / count; vwap = sum(p*v) / sum v (None if the volume is 0); change = last - first;
  change_pct = change / first * 100 (None if first is 0); rate = trades per second over the span
  the window's trades cover (first trade to end, plus one average gap; at least 1 s, at most W:
  `window.trade_rate`), so a symbol that just began trading reads its pace in every window.
  An empty window has count 0, volume 0.0, rate 0.0 and every price field None.
  `last_price` / `last_trade_ms` describe the symbol's latest trade (largest t, ties: last
  received) since it last went quiet.
* **Boundaries.** The multiples of `emit_interval_ms`. A symbol's boundary B is *closed* (its
  snapshot, every window ending at B, is emitted) when the first of these comes in its
  partition: a trade of the symbol with ``t > B`` (its own event time), or a watermark record
  with ``wm >= B`` (quiet symbols slide and emit too). A batch is therefore split: its trades
  with ``t <= B`` are applied, B is closed, then the rest follows. Boundaries close in order.
* **Quiet symbols.** A symbol's first boundary is the first one at or after its first trade
  that the partition's watermark has not closed yet. Boundaries close one by one from there,
  until one whose windows are all empty: that snapshot is emitted, the symbol goes quiet and
  its state is dropped; nothing more is emitted for it until it trades again (then it starts
  afresh as above).
* **Watermarks.** A watermark record ``wm`` says: the query side's receive clock has passed
  ``wm + lateness`` (see `source.lateness`). The partition keeps the largest seen. A `final`
  watermark (the end of a replay) also closes each symbol's boundary holding its latest trade,
  so the last state of every symbol is emitted. The snapshots a watermark closes come in
  boundary order, then symbol name order.
* **Untrusted times.** A trade stamped more than `max_future_ms` after the receive time its
  batch records is dropped (`future_time`). A trade at or before ``next boundary - longest
  window`` of its symbol (for a symbol without state: of the first boundary the watermark left
  open) can reach no window still to be emitted: dropped (`too_old`). Neither moves any clock,
  so one absurd timestamp costs one counted drop and nothing else.
* **Bounded state.** A partition tracks at most `max_symbols` symbols with state; a trade that
  would start one more is dropped (`too_many_symbols`). Quiet symbols free their place. The
  bound depends on the partition's log alone, so it decides alike on every analyzer, but a
  restart replaying from a checkpoint may find a place free that the first run did not (a
  symbol whose records all lie before the replay point): exact restarts need the bound unmet.
* **Late trades.** A trade at or before a boundary already closed for its symbol, but not too
  old, is applied at its sorted place (after equal times) and counted in `late`: snapshots
  already emitted are not revised, later ones include it.
* **Exactness.** Every snapshot equals a recomputation over the trades applied so far: counts,
  first/last/min/max exact; volume, mean and vwap within 1e-9 relative (the running sums are
  kept within 1e-12 relative of `math.fsum`, however many trades go through).

Trade times are integer epoch milliseconds. Batches whose times are sorted and not earlier than
the symbol's latest take the fast path: a C-level sortedness check, one `extend` per column and a
`bisect` per boundary crossed; metrics are computed in bulk per snapshot (see `window.py`).
Anything else is applied trade by trade in the order received.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from stockup_tui.engine.analyzer.partition import Checkpoint, Counters, Partition
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot

#: Default bound on how far after its receive time a trade may be stamped.
DEFAULT_MAX_FUTURE_MS = 5_000
#: Default bound on the symbols with state per partition.
DEFAULT_MAX_SYMBOLS = 10_000


class Analyzer:
    """The partitions this process owns, each an independent `Partition`."""

    def __init__(
        self,
        windows_ms: Sequence[int],
        emit_interval_ms: int = 1000,
        max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
        *,
        max_symbols: int = DEFAULT_MAX_SYMBOLS,
    ) -> None:
        windows = [int(w) for w in windows_ms]
        if not windows or min(windows) <= 0:
            raise ValueError(f"window lengths must be positive, got {list(windows_ms)}")
        if emit_interval_ms <= 0:
            raise ValueError(f"emit interval must be positive, got {emit_interval_ms}")
        if emit_interval_ms > max(windows):
            # Every trade must fall in the window of the first boundary after it.
            raise ValueError(
                f"emit interval {emit_interval_ms} ms is longer than the longest window"
            )
        if max_future_ms < 0:
            raise ValueError(f"max_future must not be negative, got {max_future_ms}")
        self.windows_ms: tuple[int, ...] = tuple(windows)
        self.emit_interval_ms = int(emit_interval_ms)
        self.max_future_ms = int(max_future_ms)
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be at least 1, got {max_symbols}")
        self.max_symbols = int(max_symbols)
        self.counters = Counters()
        self._parts: dict[int, Partition] = {}

    # -- partitions --------------------------------------------------------------------------

    def partition(self, number: int) -> Partition:
        part = self._parts.get(number)
        if part is None:
            part = self.start_partition(number, None)
        return part

    def start_partition(self, number: int, watermark_ms: int | None) -> Partition:
        """(Re)starts a partition from nothing at `watermark_ms` (a checkpoint's, or None)."""
        part = self._parts[number] = Partition(
            self.windows_ms,
            self.emit_interval_ms,
            self.max_future_ms,
            self.counters,
            watermark_ms,
            max_symbols=self.max_symbols,
        )
        return part

    def drop_partition(self, number: int) -> None:
        """Forgets a partition another analyzer owns now."""
        self._parts.pop(number, None)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def checkpoint(self, number: int, next_offset: int) -> Checkpoint:
        return self.partition(number).checkpoint(next_offset)

    # -- records -----------------------------------------------------------------------------

    def trades(
        self, batch: SymbolBatch, partition: int = 0, offset: int = -1, emit: bool = True
    ) -> list[SymbolSnapshot]:
        """Applies a trade batch of `partition`; returns the snapshots closed (none if not
        `emit`: a replay rebuilding state)."""
        part = self._parts.get(partition)
        if part is None:
            part = self.start_partition(partition, None)
        return part.trades(batch, offset, emit)

    def watermark(
        self,
        wm_ms: int,
        partition: int = 0,
        offset: int = -1,
        emit: bool = True,
        final: bool = False,
    ) -> list[SymbolSnapshot]:
        """Applies a watermark record of `partition` (see the module docstring)."""
        part = self._parts.get(partition)
        if part is None:
            part = self.start_partition(partition, None)
        return part.watermark(wm_ms, offset, emit, final)

    # -- counters ----------------------------------------------------------------------------

    @property
    def ingested(self) -> int:
        return self.counters.ingested

    @property
    def bus_duplicate(self) -> int:
        return self.counters.bus_duplicate

    @property
    def late(self) -> int:
        return self.counters.late

    @property
    def too_old(self) -> int:
        return self.counters.too_old

    @property
    def future_time(self) -> int:
        return self.counters.future_time

    @property
    def too_many_symbols(self) -> int:
        return self.counters.too_many_symbols

    @property
    def symbols(self) -> list[str]:
        """Symbols with window state, partition by partition, in order of first trade."""
        return [name for part in self._parts.values() for name in part.syms]

    @property
    def watermark_ms(self) -> int | None:
        """The lowest watermark over the partitions owned (None before every one has one)."""
        marks = [part.wm for part in self._parts.values()]
        if not marks or min(marks) == float("-inf"):
            return None
        return int(min(marks))

    # -- queries -----------------------------------------------------------------------------

    def live(self, symbol: str, points: int = 0) -> SymbolSnapshot | None:
        """Current snapshot of `symbol` (None if unknown): at its latest trade or closed
        boundary, or the last one emitted if it went quiet. `points` > 0 adds each window's
        price series (`WindowMetrics.closes`) for the screen."""
        for part in self._parts.values():
            snap = part.live(symbol, points)
            if snap is not None:
                return snap
        return None

    def recent_trades(self, symbol: str, n: int = 20) -> list[tuple[int, float, float]]:
        """The symbol's latest `n` trades in its windows, newest first: (t, price, volume)."""
        for part in self._parts.values():
            if symbol in part.syms:
                return part.recent(symbol, n)
        return []

    def live_all(self, points: int = 0) -> list[SymbolSnapshot]:
        """Live snapshots of every symbol, active ones first."""
        return list(self._iter_live(points))

    def _iter_live(self, points: int) -> Iterator[SymbolSnapshot]:
        for part in self._parts.values():
            for name in part.syms:
                snap = part.live(name, points)
                if snap is not None:
                    yield snap
        for part in self._parts.values():
            yield from (snap for name, snap in part.quiet.items() if name not in part.syms)
