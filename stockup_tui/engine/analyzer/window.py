"""Per-symbol sliding-window state: exact metrics with no per-trade Python work.

The trades of one symbol live in parallel lists (`ts`, `px`, `vol`, and `pv` = px*vol computed
once at ingest rather than at every add and evict) sorted by time, ties in the order received.
Indices are *absolute* (`base` + list position) so that the consumed head can be cut off with one
`del lst[:k]` without renumbering anything.

A query at window end `E` catches every window up in bulk:

* The *tail* (trades with ``t <= E``) is shared by all windows; the newly covered slice is reduced
  once with C-level `math.fsum` / `min` / `max` and the result is reused by every window.
* Each window's *head* (first trade with ``t > E - W``) moves forward with `bisect_right`; the
  evicted slice is reduced the same way and subtracted.
* The running sums (volume, price, price*volume) therefore only see two float operations per
  query, not per trade. Each keeps a rigorous bound on its accumulated rounding error; once the
  bound exceeds ``1e-12`` of the sum it is recomputed exactly with `fsum` over the whole window.
  That keeps the sums within 1e-12 relative forever (no drift) at an amortized cost near zero,
  and makes a sum that cancels to zero exactly zero.
* min/max use *segments*: the window is covered by consecutive index ranges, each with its own
  min and max (a deque per field, so the window extreme is one C-level `min` over a few dozen
  floats). New trades merge into the last segment until it reaches a size cap; whole segments are
  evicted from the front. When the head cuts into the first segment, its extreme is recomputed
  only if the cut part held it, and the remainder is split into finer segments so that a trending
  price (extreme always at the front) does not rescan a large segment on every query.
* Out-of-order inserts into data a query already consumed mark the store *dirty*; the next query
  rebuilds every window from the lists. Simple and exact beats clever on this rare path.

Queries must come with a non-decreasing `E`: heads and tails only move forward. The analyzer
guarantees that (see its module docstring). Trades later than `E` may already be stored (a batch
that crosses a boundary is stored whole); a later query consumes them.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from math import fsum
from operator import mul

from stockup_tui.engine.model import WindowMetrics

_U = 2.0**-53  # unit roundoff: one rounding changes a value by at most _U * |result|
_REL_BOUND = 1e-12  # recompute a sum exactly once its error bound exceeds this fraction of it
_COMPACT_MIN = 4096  # do not compact the arrays for fewer dead trades than this
# Compact once the dead prefix is this fraction of the stored trades: a small fraction keeps the
# resident size close to the window's own (flat memory), at the price of a C memmove of the live
# part every 1/_COMPACT_FRACTION of a window (a few percent of the analyzer's time).
_COMPACT_FRACTION = 8
_SEG_FLOOR = 256  # smallest cap on the length of an appended segment
_SEG_SHIFT = 4  # segment cap = window length >> _SEG_SHIFT, so about 16 segments per window
_FINE = 64  # below this size a segment is not split further
_SPLIT_PARTS = 8  # a re-scanned first segment is split into this many parts


class _Window:
    """Running state of one window length over the symbol's lists (absolute indices)."""

    __slots__ = (
        "empty",
        "err_p",
        "err_pv",
        "err_v",
        "head",
        "per_sec",
        "seg_max",
        "seg_min",
        "seg_start",
        "sum_p",
        "sum_pv",
        "sum_v",
        "width",
    )

    def __init__(self, width: int) -> None:
        if width <= 0:
            raise ValueError(f"window length must be positive, got {width}")
        self.width = width
        self.per_sec = width / 1000
        self.empty = WindowMetrics(
            window_ms=width,
            count=0,
            volume=0.0,
            first=None,
            last=None,
            min=None,
            max=None,
            mean=None,
            vwap=None,
            change=None,
            change_pct=None,
            rate=0.0,
        )
        self.head = 0
        self.seg_start: deque[int] = deque()
        self.seg_min: deque[float] = deque()
        self.seg_max: deque[float] = deque()
        self.reset()

    def reset(self) -> None:
        """Forget the content (the window is empty): exact zero sums, no segments."""
        self.sum_v = self.sum_p = self.sum_pv = 0.0
        self.err_v = self.err_p = self.err_pv = 0.0
        self.seg_start.clear()
        self.seg_min.clear()
        self.seg_max.clear()


class SymbolWindows:
    """Trades of one symbol plus the state of each of its windows.

    `windows_ms` fixes the order of `WindowMetrics` in every query result.
    """

    __slots__ = ("base", "dirty", "last_end", "longest", "pv", "px", "tail", "ts", "vol", "windows")

    def __init__(self, windows_ms: Sequence[int]) -> None:
        if not windows_ms:
            raise ValueError("at least one window length is required")
        # Typed arrays: 8 bytes a value instead of a pointer plus a float object (about 4x less
        # memory for a full 5-minute window), and C-level extend/slice/min/fsum all the same.
        self.ts = array("q")
        self.px = array("d")
        self.vol = array("d")
        self.pv = array("d")
        self.base = 0  # absolute index of ts[0]
        self.tail = 0  # absolute index one past the last trade consumed by a query
        self.last_end: float = float("-inf")  # E of the last query
        self.dirty = False
        self.windows = [_Window(w) for w in windows_ms]
        self.longest = max(self.windows, key=lambda w: w.width)

    def __len__(self) -> int:
        return len(self.ts)

    # -- ingestion ---------------------------------------------------------------------------

    def extend(self, t: Sequence[int], p: Sequence[float], v: Sequence[float]) -> None:
        """Append trades sorted by time, none earlier than the stored ones (C-level extends)."""
        self.ts.extend(t)
        self.px.extend(p)
        self.vol.extend(v)
        self.pv.extend(map(mul, p, v))

    def insert(self, t: int, p: float, v: float) -> None:
        """Insert one out-of-order trade at its sorted place, after equal times.

        A trade at or before ``last_end - longest window`` can never enter a window again (later
        queries have a larger end), so it is not stored at all.
        """
        if t <= self.last_end - self.longest.width:
            return
        ts = self.ts
        pos = bisect_right(ts, t)
        if pos == len(ts):
            ts.append(t)
            self.px.append(p)
            self.vol.append(v)
            self.pv.append(p * v)
            return
        ts.insert(pos, t)
        self.px.insert(pos, p)
        self.vol.insert(pos, v)
        self.pv.insert(pos, p * v)
        if self.base + pos < self.tail:
            self.dirty = True  # indices of consumed data shifted: rebuild at the next query

    # -- queries -----------------------------------------------------------------------------

    def query(self, end: float, points: int = 0) -> tuple[WindowMetrics, ...]:
        """Metrics of every window ending at `end` over the trades stored so far.

        With `points`, each window also carries `closes`: the window cut into `points` equal
        buckets, the last price at or before each bucket's end (the screen's sparkline/chart).
        """
        if end < self.last_end:
            raise ValueError(f"window end went back from {self.last_end} to {end}")
        if self.dirty:
            self._rebuild(end)
        else:
            self._advance(end)
        self.last_end = end
        base = self.base
        b = self.tail - base
        px = self.px
        out = []
        for w in self.windows:
            h = w.head - base
            count = b - h
            if not count:
                out.append(w.empty)
                continue
            first = px[h]
            last = px[b - 1]
            sv = w.sum_v
            change = last - first
            out.append(
                WindowMetrics(
                    w.width,
                    count,
                    sv,
                    first,
                    last,
                    min(w.seg_min),
                    max(w.seg_max),
                    w.sum_p / count,
                    w.sum_pv / sv if sv else None,
                    change,
                    change / first * 100 if first else None,
                    count / w.per_sec,
                    self._closes(end, w.width, h, b, points) if points else (),
                )
            )
        head = self.longest.head - base
        if head > _COMPACT_MIN and _COMPACT_FRACTION * head > len(self.ts):
            del self.ts[:head]
            del self.px[:head]
            del self.vol[:head]
            del self.pv[:head]
            self.base += head
        return tuple(out)

    def _closes(self, end: float, width: int, h: int, b: int, points: int) -> tuple[float, ...]:
        """Bucket closes over [h, b) (local indices): one bisect per bucket, no per-trade work."""
        ts = self.ts
        px = self.px
        start = end - width
        step = width / points
        out = []
        for k in range(1, points + 1):
            i = bisect_right(ts, start + k * step, h, b) - 1
            if i >= h:
                out.append(px[i])
        return tuple(out)

    def _advance(self, end: float) -> None:
        """Move the shared tail and every head to `end`, updating sums and segments in bulk."""
        ts = self.ts
        # Zero-copy views for the bulk reads below: slicing the arrays themselves would copy
        # each range into a temporary buffer, and those transient allocations (up to a window's
        # size at a sum refresh) leave the C heap fragmented: resident memory creeps up.
        # The views die with this call, before anything resizes the arrays.
        px = memoryview(self.px)
        vol = memoryview(self.vol)
        pv = memoryview(self.pv)
        base = self.base
        a = self.tail - base
        n = len(ts)
        b = bisect_right(ts, end, a) if n and ts[-1] > end else n
        new_tail = base + b
        added = b > a
        if added:
            pa = px[a:b]
            add_v = fsum(vol[a:b])
            add_p = fsum(pa)
            add_pv = fsum(pv[a:b])
            add_min = min(pa)
            add_max = max(pa)
            abs_add_v = abs(add_v)
            abs_add_p = abs(add_p)
            abs_add_pv = abs(add_pv)
        self.tail = new_tail
        for w in self.windows:
            old_h = w.head - base
            h = bisect_right(ts, end - w.width, old_h, b)
            if h == b:  # window empty: exact zeros, no segments
                if old_h < b or added:
                    w.reset()
                w.head = new_tail
                continue
            sv = w.sum_v
            sp = w.sum_p
            spv = w.sum_pv
            ev = w.err_v
            ep = w.err_p
            epv = w.err_pv
            if added:
                sv += add_v
                sp += add_p
                spv += add_pv
                ev += _U * (abs_add_v + abs(sv))
                ep += _U * (abs_add_p + abs(sp))
                epv += _U * (abs_add_pv + abs(spv))
                starts = w.seg_start
                cap = (new_tail - w.head) >> _SEG_SHIFT
                if starts and base + a - starts[-1] < (cap if cap > _SEG_FLOOR else _SEG_FLOOR):
                    mins = w.seg_min
                    maxs = w.seg_max
                    if add_min < mins[-1]:
                        mins[-1] = add_min
                    if add_max > maxs[-1]:
                        maxs[-1] = add_max
                else:
                    starts.append(base + a)
                    w.seg_min.append(add_min)
                    w.seg_max.append(add_max)
            if h > old_h:
                pr = px[old_h:h]
                rem_v = fsum(vol[old_h:h])
                rem_p = fsum(pr)
                rem_pv = fsum(pv[old_h:h])
                sv -= rem_v
                sp -= rem_p
                spv -= rem_pv
                ev += _U * (abs(rem_v) + abs(sv))
                ep += _U * (abs(rem_p) + abs(sp))
                epv += _U * (abs(rem_pv) + abs(spv))
                self._evict(w, base + h, new_tail, pr)
            if ev > _REL_BOUND * abs(sv):
                sv = fsum(vol[h:b])
                ev = _U * abs(sv)
            if ep > _REL_BOUND * abs(sp):
                sp = fsum(px[h:b])
                ep = _U * abs(sp)
            if epv > _REL_BOUND * abs(spv):
                spv = fsum(pv[h:b])
                epv = _U * abs(spv)
            w.sum_v = sv
            w.sum_p = sp
            w.sum_pv = spv
            w.err_v = ev
            w.err_p = ep
            w.err_pv = epv
            w.head = base + h

    def _evict(self, w: _Window, head: int, tail: int, removed: list[float]) -> None:
        """Drop segments before absolute index `head` (< `tail`); fix the cut first segment.

        `removed` holds the prices from the old head to `head`, which is exactly the cut part of
        the first segment when no whole segment was dropped (the common case).
        """
        starts = w.seg_start
        mins = w.seg_min
        maxs = w.seg_max
        base = self.base
        px = memoryview(self.px)  # zero-copy reads, see `_advance`
        if len(starts) > 1 and starts[1] <= head:
            while len(starts) > 1 and starts[1] <= head:
                starts.popleft()
                mins.popleft()
                maxs.popleft()
            s0 = starts[0]
            if s0 >= head:
                return
            removed = px[s0 - base : head - base]
        if min(removed) > mins[0] and max(removed) < maxs[0]:
            starts[0] = head  # both extremes are in the remaining part
            return
        end = starts[1] if len(starts) > 1 else tail
        starts.popleft()
        mins.popleft()
        maxs.popleft()
        # Split the remainder into finer segments (pushed to the front in reverse order), so that
        # the next cuts rescan a small part only.
        first = head - base
        last = end - base
        length = last - first
        step = max(_FINE, length // _SPLIT_PARTS)
        for s in reversed(range(first, last, step)):
            part = px[s : min(s + step, last)]
            starts.appendleft(s + base)
            mins.appendleft(min(part))
            maxs.appendleft(max(part))

    def _rebuild(self, end: float) -> None:
        """Recompute every window exactly from the lists (after an out-of-order insert)."""
        ts = self.ts
        px = memoryview(self.px)  # zero-copy reads, see `_advance`
        vol = memoryview(self.vol)
        pv = memoryview(self.pv)
        base = self.base
        b = bisect_right(ts, end)
        self.tail = base + b
        for w in self.windows:
            h = bisect_right(ts, end - w.width, 0, b)
            w.reset()
            w.head = base + h
            if h == b:
                continue
            w.sum_v = fsum(vol[h:b])
            w.sum_p = fsum(px[h:b])
            w.sum_pv = fsum(pv[h:b])
            w.err_v = _U * abs(w.sum_v)
            w.err_p = _U * abs(w.sum_p)
            w.err_pv = _U * abs(w.sum_pv)
            step = max(_SEG_FLOOR, (b - h) >> _SEG_SHIFT)
            for s in range(h, b, step):
                part = px[s : min(s + step, b)]
                w.seg_start.append(base + s)
                w.seg_min.append(min(part))
                w.seg_max.append(max(part))
        self.dirty = False
