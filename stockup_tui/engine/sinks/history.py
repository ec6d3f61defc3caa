"""A monitor's own price history: the screen of `--role monitor` reads snapshots from the
metrics topic, one a second per symbol, which carry no intra-window prices. Kept here per
symbol (the last price at each snapshot, for the longest window), they give the chart and the
sparkline their closes, as the analyzer's live snapshots do on a screen of its own."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable

from msgspec.structs import replace

from stockup_tui.engine.model import SymbolSnapshot


class PriceHistory:
    """(time, last price) per symbol, at most `longest_ms` back from its latest snapshot."""

    def __init__(self, longest_ms: int, max_symbols: int = 10_000) -> None:
        self.longest_ms = longest_ms
        self.max_symbols = max_symbols
        self._times: dict[str, deque[int]] = {}
        self._prices: dict[str, deque[float]] = {}

    def add(self, snapshots: Iterable[SymbolSnapshot]) -> None:
        times, prices = self._times, self._prices
        for snap in snapshots:
            if snap.last_price is None:
                continue
            ts = times.get(snap.symbol)
            if ts is None:
                if len(times) >= self.max_symbols:
                    continue  # bounded: a flood of symbols on the topic costs nothing here
                ts = times[snap.symbol] = deque()
                prices[snap.symbol] = deque()
            px = prices[snap.symbol]
            if ts and snap.ts_ms <= ts[-1]:
                continue  # a repeat (at least once delivery) or an older one
            ts.append(snap.ts_ms)
            px.append(snap.last_price)
            cut = snap.ts_ms - self.longest_ms
            while ts and ts[0] <= cut:
                ts.popleft()
                px.popleft()

    def with_closes(self, snap: SymbolSnapshot, points: int) -> SymbolSnapshot:
        """`snap` with each window's `closes`: the last price at or before each of `points`
        equal buckets' ends, from the history (as `window.py` does from trades)."""
        ts = self._times.get(snap.symbol)
        if not ts or points <= 0:
            return snap
        times, prices = list(ts), list(self._prices[snap.symbol])
        windows = []
        for w in snap.windows:
            start = snap.ts_ms - w.window_ms
            step = w.window_ms / points
            first = bisect_right(times, start)
            closes = []
            for k in range(1, points + 1):
                i = bisect_right(times, start + k * step) - 1
                if i >= first:
                    closes.append(prices[i])
            windows.append(replace(w, closes=tuple(closes)))
        return replace(snap, windows=tuple(windows))
