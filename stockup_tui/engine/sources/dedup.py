"""Dropping the trades that Finnhub sends more than once.

Finnhub trades carry no id and the feed resends some of them two or three times, usually within
a second. A trade is therefore identified by its content: the key is
``(symbol, price, time_ms, volume, conditions)`` with conditions as a tuple or None (null
conditions and ``[]`` are different keys); the parser hashes its frozen trade structs, which
hold exactly these five fields.

Policy, precisely:

* Two generations of sets, ``cur`` and ``old``. A key is looked up in both; a miss adds it to
  ``cur`` (a fresh trade), a hit is a duplicate (and refreshes the key into ``cur``, so a third
  copy is judged against the second).
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
  trade. Two different trades with colliding hashes (astronomically rare) would drop the second
  one; it is counted under ``duplicate`` like any other, so nothing disappears silently.
* Memory is bounded by the keys of the last two generations: at most about
  ``2 * rate * horizon`` ints of roughly 80 bytes each with their set slot (10,000 trades/s with
  ``horizon=2`` -> 40,000 keys, about 3 MB; 1,000,000 trades/s -> about 300 MB).
"""

from __future__ import annotations

from collections.abc import Hashable


class DuplicateFilter:
    """Two-generation content hash filter.

    The parser applies the same logic to a whole frame at once with C-level set operations on
    ``cur`` and ``old`` (no method call per trade); `seen` is the per-key form for everyone else.
    Read ``cur`` and ``old`` again after each `rotate_if_due`: rotation replaces the sets.
    """

    __slots__ = ("_last_call", "_next_rotation", "cur", "horizon", "old", "rotations")

    def __init__(self, horizon: float = 2.0, now: float | None = None) -> None:
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0, got {horizon!r}")
        self.horizon = float(horizon)
        self.cur: set[int] = set()
        self.old: set[int] = set()
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
            self.old = self.cur if now - self._last_call < self.horizon else set()
            self.cur = set()
            self._next_rotation = now + self.horizon
            self.rotations += 1
        self._last_call = now

    def seen_hash(self, h: int) -> bool:
        """True if `h` is a duplicate; otherwise remember it. Same as the parser's inline path."""
        cur = self.cur
        if h in cur:
            return True
        if h in self.old:
            cur.add(h)
            return True
        cur.add(h)
        return False

    def seen(self, key: Hashable) -> bool:
        """True if `key` (e.g. ``(s, p, t, v, c_tuple)``) is a duplicate; otherwise remember it."""
        return self.seen_hash(hash(key))

    @property
    def size(self) -> int:
        """Keys held in both generations (the memory bound)."""
        return len(self.cur) + len(self.old)

    def clear(self) -> None:
        """Forget every key (both generations)."""
        self.cur = set()
        self.old = set()
