"""Exact event-time sliding windows per symbol, emitted at epoch-aligned boundaries.

Rules (the README quotes them):

* **Window.** A window of length W ending at E covers exactly the trades of the symbol with
  ``E - W < t <= E``. Metrics: count; volume = sum v; first = price of the earliest trade (ties:
  first received); last = price of the latest trade (ties: last received); min; max;
  mean = sum p / count; vwap = sum(p*v) / sum v (None if the volume is 0); change = last - first;
  change_pct = change / first * 100 (None if first is 0); rate = count / (W / 1000) trades per
  second. An empty window has count 0, volume 0.0, rate 0.0 and every price field None.
  `SymbolSnapshot.last_price` / `last_trade_ms` describe the latest trade ever seen for the
  symbol (largest t, ties: last received), even when the windows are empty.
* **Emission.** Boundaries are the multiples of `emit_interval_ms` (epoch aligned). For each symbol,
  boundary B is emitted (a snapshot with ``ts_ms == B``, every window ending at B) when a trade of
  that symbol with ``t > B`` is about to be applied, or when ``advance_to(ts)`` is called with
  ``ts >= B``. A batch is therefore split: its trades with ``t <= B`` are applied, B is emitted,
  then the rest follows. Every crossed boundary is emitted, in order, starting with the first
  boundary at or after the symbol's first trade (the first boundary whose windows contain it),
  except a boundary whose windows are all empty when the previous snapshot emitted for the symbol
  also had all windows empty: a quiet symbol yields one empty snapshot, not an endless series.
* **Live.** ``live(symbol)`` is the snapshot at ``E = max(latest t of the symbol, last boundary
  emitted for it)``: it reflects every trade applied so far, and successive live and emitted
  snapshots of a symbol never go back in E.
* **Out of order.** Trades of a symbol normally come with non-decreasing t. A trade with t below
  an earlier one is inserted at its sorted place (after equal times) and the windows stay exact.
  A trade with t at or before the last boundary already emitted for its symbol is still applied
  (later snapshots whose windows cover it count it) and counted in `late`; snapshots already
  emitted are not revised. A trade with ``t <= symbol's max t - longest window`` can never be in
  a future window: it is dropped and counted in `too_old`. `ingested` counts every trade passed
  to `ingest`, dropped or not.
* **Exactness.** Every snapshot equals a recomputation over the trades applied so far: counts,
  first/last/min/max exact; volume, mean and vwap within 1e-9 relative (the running sums are
  kept within 1e-12 relative of `math.fsum`, however many trades go through).

Trade times are integer epoch milliseconds. Batches (`SymbolBatch`) whose times are sorted and
not earlier than the symbol's latest trade take the fast path: a C-level sortedness check, one
list `extend` per column and a `bisect` per boundary crossed; metrics are computed in bulk per
emitted or live snapshot (see `window.py`). Anything else is applied trade by trade in the order
received.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from stockup_tui.engine.analyzer.window import SymbolWindows
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot

_NEG_INF = float("-inf")


class _Symbol:
    """Boundary bookkeeping of one symbol around its window store."""

    __slots__ = (
        "last_emitted",
        "last_price",
        "last_trade_ms",
        "max_t",
        "name",
        "next_b",
        "prev_empty",
        "store",
    )

    def __init__(self, name: str, windows_ms: Sequence[int], next_b: int) -> None:
        self.name = name
        self.store = SymbolWindows(windows_ms)
        self.max_t: float = _NEG_INF  # largest t applied
        self.next_b = next_b  # next boundary to emit; invariant: next_b >= max_t
        self.last_emitted: float = _NEG_INF  # last boundary emitted
        self.prev_empty = False  # whether the last emitted snapshot had all windows empty
        self.last_price: float | None = None
        self.last_trade_ms: int | None = None

    def snapshot(self, end: float, points: int = 0) -> SymbolSnapshot:
        return SymbolSnapshot(
            self.name,
            int(end),
            self.last_price,
            self.last_trade_ms,
            self.store.query(end, points),
        )


class Analyzer:
    """Routes trades to per-symbol windows and emits snapshots at event-time boundaries."""

    def __init__(self, windows_ms: Sequence[int], emit_interval_ms: int = 1000) -> None:
        windows = [int(w) for w in windows_ms]
        if not windows or min(windows) <= 0:
            raise ValueError(f"window lengths must be positive, got {list(windows_ms)}")
        if emit_interval_ms <= 0:
            raise ValueError(f"emit interval must be positive, got {emit_interval_ms}")
        self.windows_ms: tuple[int, ...] = tuple(windows)
        self.emit_interval_ms = int(emit_interval_ms)
        self._longest = max(windows)
        self._syms: dict[str, _Symbol] = {}
        self._watermark: float = _NEG_INF
        self.late = 0
        self.too_old = 0
        self.ingested = 0

    # -- introspection -------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Symbols with state, in order of first trade."""
        return list(self._syms)

    @property
    def watermark_ms(self) -> int | None:
        """Largest trade time applied over all symbols (None before the first trade)."""
        return None if self._watermark == _NEG_INF else int(self._watermark)

    # -- ingestion -----------------------------------------------------------------------------

    def ingest(self, batch: SymbolBatch) -> list[SymbolSnapshot]:
        """Apply one symbol's trades; return the snapshots of the boundaries crossed, in order."""
        t = batch.t
        n = len(t)
        if not n:
            return []
        self.ingested += n
        t0 = t[0]
        interval = self.emit_interval_ms
        sym = self._syms.get(batch.symbol)
        if sym is None:
            sym = self._syms[batch.symbol] = _Symbol(
                batch.symbol, self.windows_ms, -(-t0 // interval) * interval
            )
        if t0 < sym.max_t or (n > 1 and sorted(t) != t):  # C-level sortedness check
            return self._ingest_slow(sym, batch)
        p = batch.p
        tn = t[-1]
        if t0 <= sym.last_emitted:
            self.late += bisect_right(t, sym.last_emitted)
        if tn > self._watermark:
            self._watermark = tn
        # The whole batch goes into the store at once: a query at boundary B only consumes the
        # stored trades with t <= B, which are exactly those applied before B is emitted.
        sym.store.extend(t, p, batch.v)
        out: list[SymbolSnapshot] = []
        nb = sym.next_b
        if tn > nb:
            i = 0
            while tn > nb:
                i = bisect_right(t, nb, i)  # t[i] > nb: nb is emitted before t[i] is applied
                if i:
                    sym.max_t = sym.last_trade_ms = t[i - 1]
                    sym.last_price = p[i - 1]
                # every boundary strictly before t[i]
                self._emit_through(sym, -(-t[i] // interval) * interval - interval, out)
                nb = sym.next_b
        sym.max_t = sym.last_trade_ms = tn
        sym.last_price = p[-1]
        return out

    def _ingest_slow(self, sym: _Symbol, batch: SymbolBatch) -> list[SymbolSnapshot]:
        """Apply trades one at a time in the order received (unsorted or out-of-order batch)."""
        out: list[SymbolSnapshot] = []
        interval = self.emit_interval_ms
        longest = self._longest
        store = sym.store
        for tk, pk, vk in zip(batch.t, batch.p, batch.v, strict=True):
            if tk >= sym.max_t:
                if tk > sym.next_b:
                    self._emit_through(sym, -(-tk // interval) * interval - interval, out)
                if tk <= sym.last_emitted:
                    self.late += 1
                store.extend((tk,), (pk,), (vk,))
                sym.max_t = sym.last_trade_ms = tk
                sym.last_price = pk
                if tk > self._watermark:
                    self._watermark = tk
            elif tk <= sym.max_t - longest:
                self.too_old += 1
            else:
                if tk <= sym.last_emitted:
                    self.late += 1
                store.insert(tk, pk, vk)
        return out

    def _emit_through(self, sym: _Symbol, last_b: float, out: list[SymbolSnapshot]) -> None:
        """Emit the symbol's pending boundaries up to `last_b` (a boundary) into `out`."""
        interval = self.emit_interval_ms
        longest = self._longest
        nb = sym.next_b
        while nb <= last_b:
            # Every applied trade has t <= nb, so the windows are all empty iff the latest is
            # outside the longest one.
            empty = sym.max_t <= nb - longest
            if empty and sym.prev_empty:
                # Nothing is applied between here and last_b: all of those are empty too.
                nb = last_b + interval
                break
            out.append(sym.snapshot(nb))
            sym.last_emitted = nb
            sym.prev_empty = empty
            nb += interval
        sym.next_b = nb

    def advance_to(self, ts_ms: int) -> list[SymbolSnapshot]:
        """Emit every symbol's boundaries up to `ts_ms` (idle time), ordered by boundary."""
        interval = self.emit_interval_ms
        last_b = ts_ms // interval * interval
        out: list[SymbolSnapshot] = []
        for sym in self._syms.values():
            if sym.next_b <= last_b:
                self._emit_through(sym, last_b, out)
        out.sort(key=lambda s: s.ts_ms)  # stable: symbols keep their order within a boundary
        return out

    # -- queries -------------------------------------------------------------------------------

    def live(self, symbol: str, points: int = 0) -> SymbolSnapshot | None:
        """Current snapshot of `symbol` (None if unknown), at its latest trade or boundary.

        `points` > 0 adds each window's price series (`WindowMetrics.closes`) for the screen.
        """
        sym = self._syms.get(symbol)
        if sym is None:
            return None
        end = sym.max_t if sym.max_t > sym.last_emitted else sym.last_emitted
        return sym.snapshot(end, points)

    def live_all(self, points: int = 0) -> list[SymbolSnapshot]:
        """Live snapshots of every symbol, in order of first trade."""
        return [s for s in (self.live(name, points) for name in self._syms) if s is not None]

    def forget(self, symbol: str) -> None:
        """Drop all state of `symbol`; a later trade starts it afresh."""
        self._syms.pop(symbol, None)
