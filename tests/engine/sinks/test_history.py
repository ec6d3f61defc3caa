"""The monitor's price history: closes for the chart and the sparkline from the metrics
topic's snapshots, bounded in time and in symbols, repeats ignored."""

from __future__ import annotations

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.engine.sinks.history import PriceHistory


def snap(
    symbol: str, ts_ms: int, last: float, windows: tuple[int, ...] = (4_000,)
) -> SymbolSnapshot:
    metrics = tuple(
        WindowMetrics(w, 1, 1.0, last, last, last, last, last, last, 0.0, 0.0, 1.0) for w in windows
    )
    return SymbolSnapshot(symbol, ts_ms, last, ts_ms, metrics)


def test_closes_per_bucket_from_the_snapshots_seen() -> None:
    history = PriceHistory(longest_ms=4_000)
    history.add(snap("A", t, float(t // 1000)) for t in range(1_000, 8_001, 1_000))
    history.add([snap("A", 8_000, 99.0)])  # a repeat (at least once): ignored
    shown = history.with_closes(snap("A", 8_000, 8.0, (4_000, 2_000)), points=4)
    # 4 s: buckets ending 5, 6, 7, 8 s; 2 s: 6.5 s has no price inside the window yet.
    assert [w.closes for w in shown.windows] == [(5.0, 6.0, 7.0, 8.0), (7.0, 7.0, 8.0)]
    assert history.with_closes(snap("B", 8_000, 1.0), points=4).windows[0].closes == ()


def test_old_prices_and_extra_symbols_are_not_kept() -> None:
    history = PriceHistory(longest_ms=2_000, max_symbols=2)
    history.add(snap(s, 1_000, 1.0) for s in ("A", "B", "C"))
    history.add([snap("A", t, 2.0) for t in range(2_000, 10_001, 1_000)])
    assert list(history._times) == ["A", "B"]
    assert list(history._times["A"]) == [9_000, 10_000]
