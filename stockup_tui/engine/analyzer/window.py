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
* **min/max come from the buckets too**: each reduced bucket also keeps its min and max price,
  and each window keeps a monotonic deque of the whole buckets it covers (the bucket minima
  increasing from the front, so the window's minimum is the front; the maxima likewise), pushed
  once per bucket and popped once per bucket, not once per trade. When an end is not a
  boundary (the screen's live snapshots), the partial bucket at the window's start is scanned
  only if its bucket's extremes could beat the window's, and the extremes of the open bucket are
  kept from one live query to the next, so only its new trades are read. A late trade inserted
  into a bucket already reduced changes that bucket's extremes: the deques that hold it are
  rebuilt from the buckets at the next query. Extremes are exact values, whatever the path.

Queries must come with a non-decreasing end `E`: heads and tails only move forward. Trades later
than `E` may already be stored (a batch that crosses a boundary is stored whole); a later query
consumes them.

Longer than most modules on purpose: the exactness argument above and the code it justifies stay
together; the bucket sums, the extremes' deques and the rates share the arrays' private indices.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from math import fsum, inf
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


def _widen(low: float, high: float, part: Sequence[float]) -> tuple[float, float]:
    """`low` and `high` widened to the prices in `part` (not empty)."""
    mn = min(part)
    mx = max(part)
    return (mn if mn < low else low), (mx if mx > high else high)


class _Window:
    """One window length: its head index and the monotonic deques of its whole buckets.

    `min_k`/`min_v` hold bucket ends and minima, the minima increasing from the front (a bucket
    whose minimum is not below a later one's can never be the window's minimum again); `max_k`/
    `max_v` likewise for maxima. `top` is the last bucket end considered for pushing."""

    __slots__ = ("empty", "head", "max_k", "max_v", "min_k", "min_v", "top", "width")

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
        self.top: float = -inf
        self.min_k: deque[int] = deque()
        self.min_v: deque[float] = deque()
        self.max_k: deque[int] = deque()
        self.max_v: deque[float] = deque()

    def restart(self, top: float) -> None:
        """Forget the deques: every bucket after `top` is to be pushed again."""
        self.min_k.clear()
        self.min_v.clear()
        self.max_k.clear()
        self.max_v.clear()
        self.top = top


class SymbolWindows:
    """Trades of one symbol plus the state of each of its windows.

    `windows_ms` fixes the order of `WindowMetrics` in every query result; `interval_ms` is the
    bucket width of the sums and extremes (the emit interval, so that windows ending at
    boundaries are whole buckets when their length is a multiple of it).
    """

    __slots__ = (
        "_drop",
        "_max",
        "_min",
        "_open",
        "_pref",
        "_pref_from",
        "_stale",
        "_summed",
        "_summed_to",
        "_vals",
        "base",
        "bk",
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
        self.last_end: float = -inf  # E of the last query
        self.windows = [_Window(w) for w in windows_ms]
        self.longest = max(self.windows, key=lambda w: w.width)
        self.interval = interval_ms
        # Reduced buckets: end times, exact integer sums (volume, price, price*volume) and their
        # running totals, min and max price; `_drop` is the running total before the first
        # bucket kept.
        self.bk = array("q")
        self._vals: list[tuple[int, int, int]] = []
        self._pref: list[tuple[int, int, int]] = []
        self._min = array("d")
        self._max = array("d")
        self._drop = (0, 0, 0)
        self._pref_from = 0  # prefixes from this bucket on are stale (an out-of-order insert)
        self._stale: float = inf  # the earliest bucket end reduced again since the last query
        self._summed = 0  # absolute index one past the last trade of a reduced bucket
        self._summed_to: float = -inf  # every bucket ending at or before is reduced
        # Extremes of the open bucket's trades scanned by the last live query: (last boundary,
        # absolute start, absolute end, min, max), so the next one scans only the new trades.
        self._open: tuple[float, int, int, float, float] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    # -- ingestion ---------------------------------------------------------------------------

    def extend(self, t: list[int], p: list[float], v: list[float]) -> None:
        """Append trades sorted by time, none earlier than the stored ones.

        Lists only: `fromlist` converts one in a C loop, a third of what `extend` costs with the
        iterator protocol (filling the arrays is the largest single cost of the analyzer)."""
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
        queries have a larger end), so it is not stored at all. Indices after it shift by one,
        which moves no head or tail backwards: their next `bisect` starts at or before the
        right place.
        """
        if t <= self.last_end - self.longest.width:
            return
        self._open = None  # indices may shift under the scanned range
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
        if t <= self._summed_to:  # its bucket was reduced without it
            self._summed += 1
            self._rereduce(t)

    def _rereduce(self, t: int) -> None:
        """Reduce the bucket holding `t` again; later prefixes are refreshed at the next query,
        and the deques holding it rebuilt."""
        interval = self.interval
        k = -(-t // interval) * interval
        lo = k - interval
        ts = self.ts
        i = bisect_right(ts, lo)
        value, mn, mx = self._bucket(i, bisect_right(ts, k, i))
        bk = self.bk
        i = bisect_left(bk, k)
        if i < len(bk) and bk[i] == k:
            self._vals[i] = value
            self._min[i] = mn
            self._max[i] = mx
        else:
            bk.insert(i, k)
            self._vals.insert(i, value)
            self._pref.insert(i, value)
            self._min.insert(i, mn)
            self._max.insert(i, mx)
        if i < self._pref_from:
            self._pref_from = i
        if k < self._stale:
            self._stale = k

    # -- bucket sums and extremes ------------------------------------------------------------

    def _bucket(self, i: int, j: int) -> tuple[tuple[int, int, int], float, float]:
        """Exact integer sums, min and max price of the trades at indices ``i:j`` (not empty).

        The slices become lists once: `fsum`, `min` and `max` then read the same float objects
        instead of boxing every array item again for each pass."""
        px = self.px[i:j].tolist()
        vol = self.vol[i:j].tolist()
        value = (
            int(fsum(vol) * _SCALE),
            int(fsum(px) * _SCALE),
            int(fsum(map(mul, px, vol)) * _SCALE),
        )
        return value, min(px), max(px)

    def _sums(self, i: int, j: int) -> tuple[int, int, int]:
        """Exact integer sums of the trades at indices ``i:j`` (not empty), without extremes."""
        px = memoryview(self.px)[i:j]  # zero-copy: each pass reads the floats it needs
        vol = memoryview(self.vol)[i:j]
        return (
            int(fsum(vol) * _SCALE),
            int(fsum(px) * _SCALE),
            int(fsum(map(mul, px, vol)) * _SCALE),
        )

    def _open_extremes(self, top_b: float, i: int, j: int) -> tuple[float, float]:
        """Min and max price at indices ``i:j``, the trades after boundary `top_b` (not empty):
        live queries come often and the open bucket only grows, so the extremes of the part
        scanned last time are kept and only the trades after it are read."""
        base = self.base
        seen = self._open
        if seen is not None and seen[0] == top_b and seen[1] == base + i and seen[2] <= base + j:
            _, _, to, mn, mx = seen
            if to < base + j:
                mn, mx = _widen(mn, mx, self.px[to - base : j])
        else:
            mn, mx = _widen(inf, -inf, self.px[i:j])
        self._open = (top_b, base + i, base + j, mn, mx)
        return mn, mx

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
            bk = self.bk
            vals = self._vals
            pref = self._pref
            mins = self._min
            maxs = self._max
            bucket = self._bucket
            self._refresh_prefixes()
            sv, sp, spv = pref[-1] if pref else self._drop
            while i < j:
                k = -(-ts[i] // interval) * interval
                e = bisect_right(ts, k, i, j)
                value, mn, mx = bucket(i, e)
                v, p, q = value
                sv += v
                sp += p
                spv += q
                bk.append(k)
                vals.append(value)
                pref.append((sv, sp, spv))
                mins.append(mn)
                maxs.append(mx)
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
            del self._min[:n]
            del self._max[:n]
            self._pref_from = max(0, self._pref_from - n)

    def _extremes(self, w: _Window, lo_b: float, top_b: float) -> tuple[float, float]:
        """Min and max price over the whole buckets ``lo_b < k <= top_b`` (inf, -inf if none):
        push the buckets reduced since the last query, pop the ones the window left."""
        if self._stale <= w.top:  # a bucket the deques may hold was reduced again
            w.restart(lo_b)
        min_k, min_v, max_k, max_v = w.min_k, w.min_v, w.max_k, w.max_v
        if top_b > w.top:
            # The buckets after `w.top` are the last ones: reduced by this query (a late trade
            # only ever re-reduces a bucket at or before the last query's boundary).
            bk = self.bk
            start = w.top if w.top > lo_b else lo_b
            first = n = len(bk)
            while first and bk[first - 1] > start:
                first -= 1
            mins = self._min
            maxs = self._max
            for i in range(first, n):
                k = bk[i]
                x = mins[i]
                while min_v and min_v[-1] >= x:
                    min_v.pop()
                    min_k.pop()
                min_k.append(k)
                min_v.append(x)
                x = maxs[i]
                while max_v and max_v[-1] <= x:
                    max_v.pop()
                    max_k.pop()
                max_k.append(k)
                max_v.append(x)
            w.top = top_b
        while min_k and min_k[0] <= lo_b:
            min_k.popleft()
            min_v.popleft()
        while max_k and max_k[0] <= lo_b:
            max_k.popleft()
            max_v.popleft()
        return (min_v[0] if min_v else inf), (max_v[0] if max_v else -inf)

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
        ts = self.ts
        base = self.base
        # Heads and the tail only move forward: each bisect starts where the last one ended.
        a = self.tail - base
        b = bisect_right(ts, end, a) if ts and ts[-1] > end else len(ts)
        self.tail = base + b
        self.last_end = end
        px = self.px
        bk = self.bk
        pref = self._pref
        out = []
        top = None  # the running totals at `end`: the same for every window
        top_min, top_max = inf, -inf  # extremes of the partial bucket ending at `end`
        for w in self.windows:
            lo = end - w.width
            h = bisect_right(ts, lo, w.head - base, b)
            w.head = base + h
            count = b - h
            lo_b = -(-lo // interval) * interval  # the first boundary at or after `lo`
            if not count or lo_b >= top_b:
                w.restart(top_b)  # no whole bucket in the window: nothing for the deques
                if not count:
                    out.append(w.empty)
                    continue
                (isv, isp, ispv), win_min, win_max = self._bucket(h, b)
            else:
                # Whole buckets from the running totals and the deques, the partial ones at
                # the ends (only when an end is not a boundary: the screen's live snapshots).
                if top is None:  # every bucket reduced ends at or before `top_b`
                    top = pref[-1] if pref else self._drop
                    if top_b != end:
                        i = bisect_right(ts, top_b, h, b)
                        if i < b:
                            v, p, q = self._sums(i, b)
                            top = (top[0] + v, top[1] + p, top[2] + q)
                            top_min, top_max = self._open_extremes(top_b, i, b)
                i = bisect_right(bk, lo_b) - 1
                low = pref[i] if i >= 0 else self._drop
                isv, isp, ispv = top[0] - low[0], top[1] - low[1], top[2] - low[2]
                win_min, win_max = self._extremes(w, lo_b, top_b)
                if top_min < win_min:
                    win_min = top_min
                if top_max > win_max:
                    win_max = top_max
                if lo_b != lo:
                    j = bisect_right(ts, lo_b, h, b)
                    if j > h:
                        v, p, q = self._sums(h, j)
                        isv, isp, ispv = isv + v, isp + p, ispv + q
                        # The partial is the tail of bucket `lo_b`, whose extremes bound its
                        # own: it is scanned only when it may hold the window's.
                        k = bisect_left(bk, lo_b)
                        if (
                            k == len(bk)
                            or bk[k] != lo_b
                            or self._min[k] < win_min
                            or self._max[k] > win_max
                        ):
                            win_min, win_max = _widen(win_min, win_max, px[h:j])
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
                    win_min,
                    win_max,
                    isp * _UNSCALE / count,
                    ispv * _UNSCALE / sv if sv else None,
                    change,
                    change / first * 100 if first else None,
                    trade_rate(count, end - ts[h], w.width),
                    self._closes(end, w.width, h, b, points) if points else (),
                )
            )
        self._stale = inf
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
