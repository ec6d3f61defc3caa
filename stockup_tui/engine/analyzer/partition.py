"""One partition's log turned into snapshots: the event-time rules of `analyzer.py`, applied.

A `Partition` sees the records of one bus partition (a Kafka partition, the RabbitMQ stream, the
memory queue) in log order: trade batches of the symbols keyed there, and the watermark records
the query side writes into every partition. Everything it decides depends only on those records,
so two analyzers reading the same partition, or one replaying it after a restart, decide alike.

Recovery: `checkpoint()` names where a restart must replay from (`replay_from`, an offset of this
partition) and the watermark in force there. Every record before `replay_from` held only trades
that can no longer reach a window still to be emitted (`_Needed` keeps the proof), so a fresh
`Partition` started at that watermark and fed the records from `replay_from` on reaches the same
state as the one that never stopped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from stockup_tui.engine.analyzer.batch_ids import BatchIds
from stockup_tui.engine.analyzer.window import SymbolWindows
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot

_NEG_INF = float("-inf")
#: Quiet symbols whose last snapshot is kept for the screen, per partition (oldest go first).
MAX_QUIET = 10_000


@dataclass(slots=True)
class Counters:
    """What the analyzer counts; shared by all partitions of one `Analyzer` (replays excluded)."""

    ingested: int = 0  # trades offered, dropped or not (but for bus duplicates)
    bus_duplicate: int = 0  # trades of a batch the bus delivered again (applied once)
    late: int = 0  # applied at or before a boundary already closed for their symbol
    too_old: int = 0  # older than every window still to be emitted for their symbol
    future_time: int = 0  # stamped more than max_future after their receive time
    too_many_symbols: int = 0  # of a new symbol while the partition tracked max_symbols


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a restarted analyzer replays this partition from, and the watermark there."""

    replay_from: int
    watermark_ms: int | None


class _Symbol:
    """Boundary bookkeeping of one symbol around its window store."""

    __slots__ = ("closed", "last_price", "last_trade_ms", "max_t", "name", "next_b", "store")

    def __init__(self, name: str, windows_ms: Sequence[int], interval: int, next_b: int) -> None:
        self.name = name
        self.store = SymbolWindows(windows_ms, interval)
        self.max_t: float = _NEG_INF  # largest t applied; invariant: max_t <= next_b
        self.next_b = next_b  # the next boundary to close
        self.closed: float = _NEG_INF  # the last boundary closed (its snapshot emitted)
        self.last_price: float | None = None
        self.last_trade_ms: int | None = None

    def snapshot(self, end: float, points: int = 0) -> SymbolSnapshot:
        return SymbolSnapshot(
            self.name, int(end), self.last_price, self.last_trade_ms, self.store.query(end, points)
        )


class Partition:
    """Event-time state of the symbols of one partition; see `analyzer.py` for the rules."""

    __slots__ = (
        "_batch_ids",
        "_interval",
        "_longest",
        "_max_future",
        "_max_symbols",
        "_needed",
        "_windows",
        "_wm_closed",
        "counters",
        "quiet",
        "syms",
        "wm",
    )

    def __init__(
        self,
        windows_ms: Sequence[int],
        interval_ms: int,
        max_future_ms: int,
        counters: Counters,
        watermark_ms: int | None = None,
        *,
        max_symbols: int = 10_000,
    ) -> None:
        self._windows = tuple(windows_ms)
        self._max_symbols = max_symbols
        self._longest = max(self._windows)
        self._interval = interval_ms
        self._max_future = max_future_ms
        self.counters = counters
        self.syms: dict[str, _Symbol] = {}
        # The last snapshot of symbols gone quiet (their state is dropped): the screen only.
        self.quiet: dict[str, SymbolSnapshot] = {}
        self.wm: float = _NEG_INF if watermark_ms is None else watermark_ms
        # The last boundary the watermark closed (-inf before any: `-inf // n` is nan).
        self._wm_closed = _NEG_INF if watermark_ms is None else self.wm // interval_ms * interval_ms
        self._needed = _Needed(interval_ms)
        self._batch_ids = BatchIds()

    # -- the boundaries ----------------------------------------------------------------------

    def first_open(self) -> float:
        """The first boundary the watermark leaves open (every symbol's next_b is at least it)."""
        return self._wm_closed + self._interval

    def _ceil(self, t: int) -> int:
        """The first boundary at or after `t`."""
        i = self._interval
        return -(-t // i) * i

    def _close(self, sym: _Symbol, last_b: float, out: list[SymbolSnapshot] | None) -> bool:
        """Closes the symbol's boundaries up to `last_b`, emitting each into `out` (None while
        replaying). Returns True when one had every window empty: the symbol went quiet there
        (that snapshot is emitted, the later empty ones are not)."""
        interval = self._interval
        quiet_at = sym.max_t + self._longest  # windows ending at or after this are empty
        nb = sym.next_b
        while nb <= last_b:
            if out is not None:
                out.append(sym.snapshot(nb))
            sym.closed = nb
            if nb >= quiet_at:
                sym.next_b = nb + interval
                return True
            nb += interval
        sym.next_b = nb
        return False

    # -- records -----------------------------------------------------------------------------

    def trades(self, batch: SymbolBatch, offset: int, emit: bool = True) -> list[SymbolSnapshot]:
        """Applies one symbol's trades (a record at `offset`); returns the snapshots closed."""
        t = batch.t
        n = len(t)
        if not n:
            return []
        counters = self.counters
        bid = batch.bid
        if bid is not None and not self._batch_ids.first_time(bid[0], batch.symbol, bid[1]):
            if emit:
                counters.bus_duplicate += n
            return []
        if emit:
            counters.ingested += n
        sym = self.syms.get(batch.symbol)
        t0 = t[0]
        in_order = n == 1 or sorted(t) == t  # C-level check
        # Timestamps ahead of their own receive time: a property of the record alone.
        recv = batch.recv
        if recv and (t[-1] if in_order else max(t)) > recv[0][0] * 1000 + self._max_future:
            batch = self._drop_future(batch, emit)
            t = batch.t
            if not t:
                return []
            t0 = t[0]
        out: list[SymbolSnapshot] | None = [] if emit else None
        if sym is not None:
            fast = in_order and t0 > sym.next_b - self._longest and t0 >= sym.max_t
        else:
            fast = in_order and t0 > self.first_open() - self._longest
            if fast:
                sym = self._create(batch.symbol, t0)
                if sym is None:
                    if emit:
                        counters.too_many_symbols += len(t)
                    return []
        if not fast:
            top = self._slow(sym, batch, out, emit)
            if top > _NEG_INF:
                self._needed.add(offset, top, self.wm)
            return out if out is not None else []
        # The fast path: sorted, none before the symbol's latest nor too old. The whole batch
        # goes into the store at once: a query at boundary B only consumes the stored trades
        # with t <= B, which are exactly those applied before B is closed.
        assert sym is not None
        p = batch.p
        tn = t[-1]
        if out is not None and (t0 <= sym.closed or t0 <= self._wm_closed):
            counters.late += bisect_right(t, max(sym.closed, self._wm_closed))
        sym.store.extend(t, p, batch.v)
        nb = sym.next_b
        if tn > nb:
            interval = self._interval
            i = 0
            while tn > nb:
                i = bisect_right(t, nb, i)  # t[i] > nb: nb is closed before t[i] is applied
                if i:
                    sym.max_t = sym.last_trade_ms = t[i - 1]
                    sym.last_price = p[i - 1]
                first_after = -(-t[i] // interval) * interval
                if self._close(sym, first_after - interval, out):
                    sym.next_b = first_after  # quiet in between: the rest were empty
                nb = sym.next_b
        sym.max_t = sym.last_trade_ms = tn
        sym.last_price = p[-1]
        self._needed.add(offset, tn, self.wm)
        return out if out is not None else []

    def _slow(
        self, sym: _Symbol | None, batch: SymbolBatch, out: list[SymbolSnapshot] | None, emit: bool
    ) -> float:
        """Trades one at a time in the order received (unsorted, out of order or too old)."""
        counters = self.counters
        interval = self._interval
        longest = self._longest
        top = _NEG_INF
        wm_closed = self._wm_closed
        for tk, pk, vk in zip(batch.t, batch.p, batch.v, strict=True):
            if sym is None:
                if tk <= self.first_open() - longest:
                    if emit:
                        counters.too_old += 1
                    continue
                sym = self._create(batch.symbol, tk)
                if sym is None:
                    if emit:
                        counters.too_many_symbols += 1
                    continue
            elif tk <= sym.next_b - longest:
                if emit:
                    counters.too_old += 1
                continue
            if tk >= sym.max_t:
                if tk > sym.next_b:
                    first_after = -(-tk // interval) * interval
                    if self._close(sym, first_after - interval, out):
                        sym.next_b = first_after
                sym.store.extend([tk], [pk], [vk])
                sym.max_t = sym.last_trade_ms = tk
                sym.last_price = pk
            else:
                sym.store.insert(tk, pk, vk)
            if emit and (tk <= sym.closed or tk <= wm_closed):
                counters.late += 1
            if tk > top:
                top = tk
        return top

    def _create(self, name: str, t: int) -> _Symbol | None:
        """State for a symbol without any: its first boundary covers `t` and is still open.
        None when the partition already tracks `max_symbols`."""
        if len(self.syms) >= self._max_symbols:
            return None
        self.quiet.pop(name, None)
        first = self._ceil(t)
        if self._wm_closed != _NEG_INF:
            first = max(first, int(self._wm_closed) + self._interval)
        sym = self.syms[name] = _Symbol(name, self._windows, self._interval, first)
        return sym

    def _drop_future(self, batch: SymbolBatch, emit: bool) -> SymbolBatch:
        """The batch without its trades stamped more than max_future after their receive time."""
        keep_t: list[int] = []
        keep_p: list[float] = []
        keep_v: list[float] = []
        keep_c: list[list[str] | None] = []
        runs: list[tuple[float, int]] = []
        t, p, v, c = batch.t, batch.p, batch.v, batch.c
        i = 0
        for when, count in batch.recv:
            limit = when * 1000 + self._max_future
            kept = 0
            for k in range(i, i + count):
                if t[k] <= limit:
                    keep_t.append(t[k])
                    keep_p.append(p[k])
                    keep_v.append(v[k])
                    keep_c.append(c[k] if c else None)
                    kept += 1
            if kept:
                runs.append((when, kept))
            i += count
        if emit:
            self.counters.future_time += len(t) - len(keep_t)
        return SymbolBatch(batch.symbol, keep_t, keep_p, keep_v, keep_c, runs, batch.bid)

    def watermark(
        self, wm_ms: int, offset: int, emit: bool = True, final: bool = False
    ) -> list[SymbolSnapshot]:
        """A watermark record: closes every symbol's boundaries up to it; `final` (the end of
        a finite source) also closes each symbol's boundary holding its latest trade."""
        interval = self._interval
        if wm_ms > self.wm:
            self.wm = wm_ms
            self._wm_closed = wm_ms // interval * interval
        last_b = self._wm_closed
        out: list[SymbolSnapshot] | None = [] if emit else None
        gone = []
        for name, sym in self.syms.items():
            end = max(last_b, self._ceil(int(sym.max_t))) if final else last_b
            if sym.next_b <= end and self._close(sym, end, out):
                gone.append(name)
        quiet = self.quiet
        for name in gone:
            sym = self.syms.pop(name)
            quiet[name] = sym.snapshot(max(sym.store.last_end, sym.next_b - interval))
            if len(quiet) > MAX_QUIET:
                del quiet[next(iter(quiet))]
        self._needed.prune(last_b - self._longest - 2 * interval)
        if out is None:
            return []
        if len(out) > 1:
            out.sort(key=_order)  # not the order symbols came in: replays may see another
        return out

    def checkpoint(self, next_offset: int) -> Checkpoint:
        """Where to replay from to rebuild this state, once the records before `next_offset`
        are done (see the module docstring)."""
        found = self._needed.first()
        if found is None:
            return Checkpoint(next_offset, None if self.wm == _NEG_INF else int(self.wm))
        offset, wm = found
        return Checkpoint(offset, None if wm == _NEG_INF else int(wm))

    # -- queries -----------------------------------------------------------------------------

    def recent(self, name: str, n: int) -> list[tuple[int, float, float]]:
        """The symbol's latest `n` trades, newest first (none once it went quiet)."""
        sym = self.syms.get(name)
        return [] if sym is None else sym.store.recent(n)

    def live(self, name: str, points: int = 0) -> SymbolSnapshot | None:
        sym = self.syms.get(name)
        if sym is None:
            return self.quiet.get(name)
        closed = sym.next_b - self._interval
        end = sym.max_t if sym.max_t > closed else closed
        if end < sym.store.last_end:
            end = sym.store.last_end
        return sym.snapshot(end, points)


def _order(snap: SymbolSnapshot) -> tuple[int, str]:
    return snap.ts_ms, snap.symbol


class _Needed:
    """The records whose trades may still reach a window to be emitted, oldest first.

    An entry covers a run of consecutive records: the offset of its first, the latest trade time
    applied from any of them, and the watermark before the first. A record joins the newest
    entry when its latest trade is within that entry's interval (or older): about one entry per
    emit interval of event time, not one per record, however fast records come; a restart then
    replays at most one interval's worth of records more than it strictly needs. An entry leaves
    once its latest trade is at or before the threshold `prune` is given, which only grows; the
    first entry left is where a replay must start.
    """

    __slots__ = ("_end", "_interval", "_offsets", "_tops", "_wms")

    def __init__(self, interval: int) -> None:
        self._interval = interval
        self._offsets: deque[int] = deque()
        self._tops: deque[float] = deque()
        self._wms: deque[float] = deque()
        self._end = _NEG_INF  # the end of the newest entry's interval

    def add(self, offset: int, top: float, wm: float) -> None:
        tops = self._tops
        if tops and top < self._end:
            if top > tops[-1]:
                tops[-1] = top
            return
        self._offsets.append(offset)
        tops.append(top)
        self._wms.append(wm)
        interval = self._interval
        self._end = (top // interval + 1) * interval

    def prune(self, threshold: float) -> None:
        tops = self._tops
        while tops and tops[0] <= threshold:
            tops.popleft()
            self._offsets.popleft()
            self._wms.popleft()

    def first(self) -> tuple[int, float] | None:
        if not self._tops:
            return None
        return self._offsets[0], self._wms[0]
