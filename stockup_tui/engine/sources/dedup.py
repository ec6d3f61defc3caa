"""Dropping the trades that Finnhub sends more than once.

Finnhub trades carry no id and the feed resends some of them two or three times, usually within
a second. A trade is therefore identified by its content: the key is
``(symbol, price, time_ms, volume, conditions)`` with conditions as a tuple or None (null
conditions and ``[]`` are different keys); the parser hashes its frozen trade structs, which
hold exactly these five fields.

Policy, precisely:

* Two generations, ``cur`` and ``old``. A key is looked up in both; a miss adds it to ``cur`` (a
  fresh trade), a hit is a duplicate (and refreshes the key into ``cur``, so a third copy is
  judged against the second).
* Each generation is split by trade time: one set per ``granule_ms`` of it. A copy has the
  same time as its original, so it is looked up in that granule's sets only. The split changes
  no decision (but for hash collisions, below); it keeps lookups cache-local: a frame's trades
  fall in one or two granules, whose sets are small and recently used, where one set per
  generation grows to millions of keys at high rates and every lookup in it missed the CPU
  caches (measured: the filter took 40% of the default pipeline at 600,000 trades/s).
* `rotate_if_due(now)` is called once per frame, before its keys, with the frame's receive time
  (so a replayed recording is filtered alike at any speed; the first call starts the clock): when
  ``horizon`` seconds have passed since the last rotation, ``old`` is dropped and ``cur``
  becomes ``old``. After an idle gap of at least ``horizon`` (no call at all), both are dropped,
  since every key is then older than the horizon. A key therefore lives for at least
  ``horizon`` seconds after it was last seen, and at most ``2 * horizon`` plus two gaps between
  frames.

Guarantees and limits:

* A copy arriving within ``horizon`` seconds of the previous one is always dropped.
* A copy arriving between ``horizon`` and ``2 * horizon`` may or may not be dropped; a copy later
  than that (plus the frame gaps above) is kept, counted as a new trade: resends that late are
  not caught.
* Two genuinely distinct trades with identical symbol, price, time, volume and conditions within
  the horizon are merged into one: without trade ids they cannot be told apart.
* The sets store ``hash(key)``, a 64-bit int, not the key: far less memory and one hash per
  trade. Two different trades with colliding hashes (astronomically rare) in the same granule
  would drop the second one (in different granules both are kept); it is counted under
  ``duplicate`` like any other, so nothing disappears silently.
* Memory is bounded by the keys of the last two generations: at most about
  ``2 * rate * horizon`` ints of roughly 80 bytes each with their set slot (10,000 trades/s with
  ``horizon=2`` -> 40,000 keys, about 3 MB; 1,000,000 trades/s -> about 300 MB), plus one set
  per granule holding keys (a few hundred bytes each; the parser's time bounds limit how many a
  feed can open when the parser bounds trade times, as the pipeline always does; without bounds
  a feed of scattered times costs a set per key).
"""

from __future__ import annotations

from collections.abc import Hashable
from itertools import compress, repeat
from operator import eq, floordiv

#: Trade-time width of one set of a generation.
GRANULE_MS = 100
#: Up to this many granules in one frame, each one's keys are picked out by a C-level pass.
_FEW_GRANULES = 4


class DuplicateFilter:
    """Two-generation content hash filter, each generation split by trade time.

    `frame` applies the policy to a whole frame's keys with C-level set operations (no method
    call per trade); `seen` is the per-key form of the same rules.
    """

    __slots__ = ("_last_call", "_next_rotation", "cur", "granule_ms", "horizon", "old", "rotations")

    def __init__(
        self, horizon: float = 2.0, now: float | None = None, granule_ms: int = GRANULE_MS
    ) -> None:
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0, got {horizon!r}")
        if granule_ms < 1:
            raise ValueError(f"granule must be at least 1 ms, got {granule_ms!r}")
        self.horizon = float(horizon)
        self.granule_ms = int(granule_ms)
        # trade time // granule_ms -> hashes of the keys seen in this generation
        self.cur: dict[int, set[int]] = {}
        self.old: dict[int, set[int]] = {}
        self.rotations = 0
        # The first `rotate_if_due` starts the schedule when `now` is not given.
        self._next_rotation = float("inf") if now is None else now + self.horizon
        self._last_call = float("-inf") if now is None else now

    def rotate_if_due(self, now: float) -> None:
        """Retire the old generation if `horizon` seconds passed since the last rotation."""
        if self._last_call == float("-inf"):
            self._next_rotation = now + self.horizon
        elif now >= self._next_rotation:
            # Keys are added right after a call, so an idle gap of a horizon outdates them all.
            self.old = self.cur if now - self._last_call < self.horizon else {}
            self.cur = {}
            self._next_rotation = now + self.horizon
            self.rotations += 1
        self._last_call = now

    def frame(self, hashes: list[int], times: list[int]) -> tuple[set[int], bool]:
        """Look up and remember the keys of one frame (`hashes[i]` of the trade at `times[i]`).

        Returns the hashes seen before this frame, and whether a hash occurs more than once in
        the frame itself with the same granule; the caller keeps a trade only if its hash is in
        neither (the first occurrence of a repeat is kept)."""
        g = self.granule_ms
        lo = min(times) // g
        if lo == max(times) // g:
            groups: list[tuple[int, list[int]]] = [(lo, hashes)]
        else:
            granules = list(map(floordiv, times, repeat(g)))
            distinct = set(granules)
            if len(distinct) <= _FEW_GRANULES:
                groups = [
                    (k, list(compress(hashes, map(eq, granules, repeat(k))))) for k in distinct
                ]
            else:  # times spread wide: one pass, whatever their number
                by: dict[int, list[int]] = {}
                for k, h in zip(granules, hashes, strict=True):
                    hs = by.get(k)
                    if hs is None:
                        by[k] = [h]
                    else:
                        hs.append(h)
                groups = list(by.items())
        cur = self.cur
        old = self.old
        seen: set[int] = set()
        unique = 0  # distinct hashes in the frame
        for k, hs in groups:
            c = cur.get(k)
            if c is None:
                c = cur[k] = set()
            hits = c.intersection(hs)  # hits only: no table for the whole frame
            unique += len(hits)
            o = old.get(k)
            if o:
                hits |= o.intersection(hs)
            before = len(c)
            c.update(hs)  # also refreshes keys found in `old`: a 3rd copy meets the 2nd
            unique += len(c) - before
            if hits:
                seen |= hits
        return seen, unique < len(hashes)

    def seen_hash(self, h: int, t_ms: int) -> bool:
        """True if the key hashed to `h`, of a trade at `t_ms`, is a duplicate; otherwise
        remember it. The same rules as `frame`."""
        k = t_ms // self.granule_ms
        c = self.cur.get(k)
        if c is None:
            c = self.cur[k] = set()
        if h in c:
            return True
        c.add(h)
        o = self.old.get(k)
        return o is not None and h in o

    def seen(self, key: tuple[str, float, int, float, Hashable]) -> bool:
        """True if `key` ``(symbol, price, time_ms, volume, conditions)`` is a duplicate;
        otherwise remember it."""
        return self.seen_hash(hash(key), key[2])

    @property
    def size(self) -> int:
        """Keys held in both generations (the memory bound)."""
        return sum(map(len, self.cur.values())) + sum(map(len, self.old.values()))

    def clear(self) -> None:
        """Forget every key (both generations)."""
        self.cur = {}
        self.old = {}
