"""Per-symbol sliding-window state: exact metrics with no per-trade Python work, and snapshots that
depend only on the trades in the window, never on the order or the moments they were queried.

The trades of one symbol live in parallel typed arrays (`ts`, `px`, `vol`) sorted by time,
ties in the order received. Indices are *absolute* (`base` + array position) so that the dead
head can be cut off with one `del` without renumbering anything.

* **Sums (volume, price, price*volume) are history-free.** Trades are grouped in *buckets*, one
  per emit interval of event time: bucket k holds the trades with ``k - interval < t <= k``.
  Each bucket is reduced once with C-level `math.fsum` and turned into an exact integer (the sum
  times 2**100, exact for any value above 2**-100); the store keeps the running integer total of
  the buckets (a prefix sum), so the sum over the whole buckets of a window is a difference of two
  integers; a window whose ends are not boundaries (the screen's live snapshots) adds the `fsum`
  of the partial bucket at each end. Integer sums cannot drift, cancel to an
  exact zero and do not depend on how the buckets were reached: an analyzer replaying the log
  after a restart computes the very same floats as the one that never stopped, so a snapshot
  emitted twice is the same bytes. A trade inserted into a bucket already reduced (out of order)
  changes that bucket's value; the prefixes after it are recomputed at the next query.
* **count, first and last** come from the window's head and tail indices (`bisect_right`).
* **min/max use segments**: the window is covered by consecutive index ranges, each with its own
  min and max (a deque per field, so the window extreme is one C-level `min` over a few dozen
  floats). New trades merge into the last segment until it reaches a size cap; whole segments are
  evicted from the front. When the head cuts into the first segment, its extreme is recomputed
  only if the cut part held it, and the remainder is split into finer segments so that a trending
  price (extreme always at the front) does not rescan a large segment on every query. An
  out-of-order insert into data a query already consumed marks the store *dirty*: the next
  query rebuilds the segments from the arrays. Extremes are exact values, whatever the path.

Queries must come with a non-decreasing end `E`: heads and tails only move forward. Trades later
than `E` may already be stored (a batch that crosses a boundary is stored whole); a later query
consumes them.

Longer than most modules on purpose: the exactness argument above and the code it justifies stay
together; the bucket sums, min/max segments and rates share the arrays' private indices.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from math import fsum
from operator import mul

from stockup_tui.engine.model import WindowMetrics

_SCALE = 2.0**100  # bucket sums become exact integers of 2**-100
_UNSCALE = 2.0**-100
_COMPACT_MIN = 4096  # do not compact the arrays for fewer dead trades than this
# Compact once the dead prefix is this fraction of the stored trades: a small fraction keeps the
# resident size close to the window's own (flat memory), at the price of a C memmove of the live
# part every 1/_COMPACT_FRACTION of a window (a few percent of the analyzer's time).
_COMPACT_FRACTION = 8
_BUCKETS_COMPACT = 256  # drop reduced buckets from the front in chunks of at least this many
_SEG_FLOOR = 256  # smallest cap on the length of an appended segment
_SEG_SHIFT = 4  # segment cap = window length >> _SEG_SHIFT, so about 16 segments per window
_FINE = 64  # below this size a segment is not split further
_SPLIT_PARTS = 8  # a re-scanned first segment is split into this many parts


#: The shortest span a window's rate is taken over (a burst within one millisecond).
MIN_RATE_SPAN_MS = 1000


def trade_rate(count: int, since_first_ms: float, width_ms: int) -> float:
    """Trades per second in a window of `count` trades whose first is `since_first_ms` before
    its end: over the span the trades cover plus one average gap (evenly spaced trades read
    exactly their pace), at least 1 s, at most the window. A symbol that began trading 10 s ago
    reads its pace, not a sixth of it in a 1m window, and the same trades read the same rate in
    every window that holds them all; once they stop, the rate decays as the window moves on."""
    span = since_first_ms * count / (count - 1) if count > 1 else since_first_ms
    return count * 1000 / min(width_ms, max(span, MIN_RATE_SPAN_MS))


class _Window:
    """Running min/max state of one window length over the symbol's arrays (absolute indices)."""

    __slots__ = ("empty", "head", "seg_max", "seg_min", "seg_start", "width")

    def __init__(self, width: int) -> None:
        if width <= 0:
            raise ValueError(f"window length must be positive, got {width}")
        self.width = width
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

    def reset(self) -> None:
        """Forget the content (the window is empty): no segments."""
        self.seg_start.clear()
        self.seg_min.clear()
        self.seg_max.clear()


class SymbolWindows:
    """Trades of one symbol plus the state of each of its windows.

    `windows_ms` fixes the order of `WindowMetrics` in every query result; `interval_ms` is the
    bucket width of the sums (the emit interval, so that windows ending at boundaries are whole
    buckets when their length is a multiple of it).
    """

    __slots__ = (
        "_drop",
        "_pref",
        "_pref_from",
        "_summed",
        "_summed_to",
        "_vals",
        "base",
        "bk",
        "dirty",
        "interval",
        "last_end",
        "longest",
        "px",
        "tail",
        "ts",
        "vol",
        "windows",
    )

    def __init__(self, windows_ms: Sequence[int], interval_ms: int = 1000) -> None:
        if not windows_ms:
            raise ValueError("at least one window length is required")
        if interval_ms <= 0:
            raise ValueError(f"interval must be positive, got {interval_ms}")
        # Typed arrays: 8 bytes a value instead of a pointer plus a float object (about 4x less
        # memory for a full 5-minute window), and C-level extend/slice/min/fsum all the same.
        self.ts = array("q")
        self.px = array("d")
        self.vol = array("d")
        self.base = 0  # absolute index of ts[0]
        self.tail = 0  # absolute index one past the last trade consumed by a query
        self.last_end: float = float("-inf")  # E of the last query
        self.dirty = False
        self.windows = [_Window(w) for w in windows_ms]
        self.longest = max(self.windows, key=lambda w: w.width)
        self.interval = interval_ms
        # Reduced buckets: end times, exact integer sums (volume, price, price*volume) and their
        # running totals; `_drop` is the running total before the first bucket kept.
        self.bk = array("q")
        self._vals: list[tuple[int, int, int]] = []
        self._pref: list[tuple[int, int, int]] = []
        self._drop = (0, 0, 0)
        self._pref_from = 0  # prefixes from this bucket on are stale (an out-of-order insert)
        self._summed = 0  # absolute index one past the last trade of a reduced bucket
        self._summed_to: float = float("-inf")  # every bucket ending at or before is reduced

    def __len__(self) -> int:
        return len(self.ts)

    # -- ingestion ---------------------------------------------------------------------------

    def extend(self, t: Sequence[int], p: Sequence[float], v: Sequence[float]) -> None:
        """Append trades sorted by time, none earlier than the stored ones.

        `fromlist` converts a list in one C loop, a third of what `extend` costs with the
        iterator protocol (the largest single cost of the analyzer, measured)."""
        if type(t) is not list or type(p) is not list or type(v) is not list:
            t, p, v = list(t), list(p), list(v)
        self.ts.fromlist(t)
        self.px.fromlist(p)
        self.vol.fromlist(v)
        if t and t[0] <= self._summed_to:  # at the time of a boundary already reduced
            m = bisect_right(t, self._summed_to)
            self._summed += m
            interval = self.interval
            for k in sorted({-(-x // interval) * interval for x in t[:m]}):
                self._rereduce(k)

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
        else:
            ts.insert(pos, t)
            self.px.insert(pos, p)
            self.vol.insert(pos, v)
            if self.base + pos < self.tail:
                self.dirty = True  # indices of consumed data shifted: rebuild the segments
        if t <= self._summed_to:  # its bucket was reduced without it
            self._summed += 1
            self._rereduce(t)

    def _rereduce(self, t: int) -> None:
        """Reduce the bucket holding `t` again; later prefixes are refreshed at the next query."""
        interval = self.interval
        k = -(-t // interval) * interval
        value = self._reduce(k - interval, k)
        bk = self.bk
        i = bisect_left(bk, k)
        if i < len(bk) and bk[i] == k:
            self._vals[i] = value
        else:
            bk.insert(i, k)
            self._vals.insert(i, value)
            self._pref.insert(i, value)
        if i < self._pref_from:
            self._pref_from = i

    # -- bucket sums -------------------------------------------------------------------------

    def _reduce(self, lo: float, hi: float) -> tuple[int, int, int]:
        """Exact integer sums of the trades with ``lo < t <= hi`` (one fsum per column)."""
        ts = self.ts
        i = bisect_right(ts, lo)
        j = bisect_right(ts, hi, i)
        if i == j:
            return (0, 0, 0)
        vol = memoryview(self.vol)[i:j]
        px = memoryview(self.px)[i:j]
        return (
            int(fsum(vol) * _SCALE),
            int(fsum(px) * _SCALE),
            int(fsum(map(mul, px, vol)) * _SCALE),
        )

    def _reduce_to(self, boundary: float) -> None:
        """Reduce every bucket ending at or before `boundary` not reduced yet."""
        if boundary <= self._summed_to:
            return
        ts = self.ts
        base = self.base
        i = self._summed - base
        j = bisect_right(ts, boundary, i)
        if j > i:
            interval = self.interval
            vol = memoryview(self.vol)  # zero-copy reads, see `_advance`
            px = memoryview(self.px)
            bk = self.bk
            vals = self._vals
            pref = self._pref
            self._refresh_prefixes()
            sv, sp, spv = pref[-1] if pref else self._drop
            while i < j:
                k = -(-ts[i] // interval) * interval
                e = bisect_right(ts, k, i, j)
                v = int(fsum(vol[i:e]) * _SCALE)
                p = int(fsum(px[i:e]) * _SCALE)
                q = int(fsum(map(mul, px[i:e], vol[i:e])) * _SCALE)
                sv += v
                sp += p
                spv += q
                bk.append(k)
                vals.append((v, p, q))
                pref.append((sv, sp, spv))
                i = e
            self._pref_from = len(pref)
            self._summed = base + j
        self._summed_to = boundary

    def _refresh_prefixes(self) -> None:
        start = self._pref_from
        pref = self._pref
        if start >= len(pref):
            return
        sv, sp, spv = pref[start - 1] if start else self._drop
        vals = self._vals
        for i in range(start, len(pref)):
            v, p, q = vals[i]
            sv += v
            sp += p
            spv += q
            pref[i] = (sv, sp, spv)
        self._pref_from = len(pref)

    def _drop_buckets(self, upto: float) -> None:
        """Forget reduced buckets ending at or before `upto` (before every future window)."""
        n = bisect_right(self.bk, upto)
        if n >= _BUCKETS_COMPACT:
            self._refresh_prefixes()
            self._drop = self._pref[n - 1]
            del self.bk[:n]
            del self._vals[:n]
            del self._pref[:n]
            self._pref_from = max(0, self._pref_from - n)

    # -- queries -----------------------------------------------------------------------------

    def recent(self, n: int) -> list[tuple[int, float, float]]:
        """The latest `n` trades stored, newest first, as (t, price, volume): the screen's tape."""
        k = len(self.ts)
        lo = max(0, k - n)
        return list(
            zip(self.ts[lo:k][::-1], self.px[lo:k][::-1], self.vol[lo:k][::-1], strict=True)
        )

    def query(self, end: float, points: int = 0) -> tuple[WindowMetrics, ...]:
        """Metrics of every window ending at `end` over the trades stored so far.

        With `points`, each window also carries `closes`: the window cut into `points` equal
        buckets, the last price at or before each bucket's end (the screen's sparkline/chart).
        """
        if end < self.last_end:
            raise ValueError(f"window end went back from {self.last_end} to {end}")
        interval = self.interval
        top_b = end // interval * interval  # the last boundary at or before `end`
        if top_b > self._summed_to:
            self._reduce_to(top_b)
        if self._pref_from < len(self._pref):
            self._refresh_prefixes()
        if self.dirty:
            self._rebuild(end)
        else:
            self._advance(end)
        self.last_end = end
        base = self.base
        b = self.tail - base
        px = self.px
        ts = self.ts
        bk = self.bk
        pref = self._pref
        out = []
        top = None
        for w in self.windows:
            h = w.head - base
            count = b - h
            if not count:
                out.append(w.empty)
                continue
            # The window's sums: its whole buckets from the running totals, the partial ones at
            # its ends (only when an end is not a boundary: the screen's live snapshots) alone.
            lo = end - w.width
            lo_b = -(-lo // interval) * interval  # the first boundary at or after `lo`
            if lo_b >= top_b:
                isv, isp, ispv = self._reduce(lo, end)
            else:
                if top is None:
                    i = bisect_right(bk, top_b) - 1
                    top = pref[i] if i >= 0 else self._drop
                    if top_b != end:
                        v, p, q = self._reduce(top_b, end)
                        top = (top[0] + v, top[1] + p, top[2] + q)
                i = bisect_right(bk, lo_b) - 1
                low = pref[i] if i >= 0 else self._drop
                isv, isp, ispv = top[0] - low[0], top[1] - low[1], top[2] - low[2]
                if lo_b != lo:
                    v, p, q = self._reduce(lo, lo_b)
                    isv, isp, ispv = isv + v, isp + p, ispv + q
            sv = isv * _UNSCALE
            first = px[h]
            last = px[b - 1]
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
                    isp * _UNSCALE / count,
                    ispv * _UNSCALE / sv if sv else None,
                    change,
                    change / first * 100 if first else None,
                    trade_rate(count, end - ts[h], w.width),
                    self._closes(end, w.width, h, b, points) if points else (),
                )
            )
        # Keep the bucket the longest window's start falls in: its partial sum is still read.
        cut_t = (end - self.longest.width) // interval * interval
        if len(bk) > _BUCKETS_COMPACT and bk[_BUCKETS_COMPACT - 1] <= cut_t - interval:
            self._drop_buckets(cut_t - interval)
        head = self.longest.head - base
        if head > _COMPACT_MIN and _COMPACT_FRACTION * head > len(self.ts):
            head = bisect_right(self.ts, cut_t, 0, head)
            if head > _COMPACT_MIN:
                del self.ts[:head]
                del self.px[:head]
                del self.vol[:head]
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
        """Move the shared tail and every head to `end`, updating the segments in bulk."""
        ts = self.ts
        # Zero-copy views for the bulk reads below: slicing the arrays themselves would copy
        # each range into a temporary buffer, and those transient allocations (up to a window's
        # size) leave the C heap fragmented: resident memory creeps up. The views die with this
        # call, before anything resizes the arrays.
        px = memoryview(self.px)
        base = self.base
        a = self.tail - base
        n = len(ts)
        b = bisect_right(ts, end, a) if n and ts[-1] > end else n
        new_tail = base + b
        added = b > a
        if added:
            pa = px[a:b]
            add_min = min(pa)
            add_max = max(pa)
        self.tail = new_tail
        for w in self.windows:
            old_h = w.head - base
            h = bisect_right(ts, end - w.width, old_h, b)
            if h == b:  # window empty: no segments
                if old_h < b or added:
                    w.reset()
                w.head = new_tail
                continue
            if added:
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
                self._evict(w, base + h, new_tail, px[old_h:h])
            w.head = base + h

    def _evict(self, w: _Window, head: int, tail: int, removed: Sequence[float]) -> None:
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
        """Recompute every window's segments from the arrays (after an out-of-order insert)."""
        ts = self.ts
        px = memoryview(self.px)  # zero-copy reads, see `_advance`
        base = self.base
        b = bisect_right(ts, end)
        self.tail = base + b
        for w in self.windows:
            h = bisect_right(ts, end - w.width, 0, b)
            w.reset()
            w.head = base + h
            if h == b:
                continue
            step = max(_SEG_FLOOR, (b - h) >> _SEG_SHIFT)
            for s in range(h, b, step):
                part = px[s : min(s + step, b)]
                w.seg_start.append(base + s)
                w.seg_min.append(min(part))
                w.seg_max.append(max(part))
        self.dirty = False
